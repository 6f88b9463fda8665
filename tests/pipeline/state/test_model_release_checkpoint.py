"""The model first-seen map in the checkpoint: markers carry it, restore merges it, old layouts are refused."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from pipeline.decode.json_events import DecodedBatch
from pipeline.detect.detector import DetectionOutput
from pipeline.kernels import layout as L
from pipeline.state.checkpoint import (
    CheckpointLayoutError,
    Marker,
    StoreLayout,
    decode_marker,
    encode_marker,
    is_marker_key,
)
from pipeline.state.manager import StateManager
from pipeline.state.snapshot import store_layouts
from tests.support.checkpoint_records import LAYOUTS, marker_bytes
from tests.support.state import EVENTS, N_PARTS, decoded, manager, offsets_after, restore_in_memory

H = 3_600_000
NEW = "frontier-next"


def _later(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The same calls two hours later, every other one on a model nobody called before."""
    return [{**e, "ts": e["ts"] + 2 * H, **({"model": NEW} if i % 2 else {})} for i, e in enumerate(events)]


B1, B2, B3 = EVENTS[:2000], _later(EVENTS[2000:3000]), _later(EVENTS[3000:])


def run(m: StateManager, batch: DecodedBatch, force: bool = False) -> DetectionOutput:
    return m.detector.process(batch, force_close=force)


def scored(out: DetectionOutput) -> list[tuple[str, int, float, list[float]]]:
    """(account, minute, score, points) per closed frame, in account and minute order."""
    sig = out.signatures
    return sorted(zip(sig["account_id"], np.asarray(sig["window_start"]).tolist(),  # type: ignore[call-overload]
                      np.asarray(sig["score"]).tolist(), sig["signal_points"], strict=True))  # type: ignore[call-overload]


def test_a_restored_worker_still_knows_which_model_is_new() -> None:
    original, restored, forgetful = manager(), manager(), manager()
    b1, b2, b3 = decoded(B1, 0), decoded(B2, 2000), decoded(B3, 3000)
    run(original, b1)
    run(original, b2)
    assert original.detector.models.new_since(NEW) != np.iinfo(np.int64).max
    prepared = original.prepare_checkpoint(offsets_after(b2))
    markers = [r for r in prepared.markers if is_marker_key(r[1])]
    assert len(markers) == N_PARTS
    restore_in_memory(original, restored, [*prepared.entities, *prepared.markers],
                      committed={p: None for p in range(N_PARTS)})
    assert restored.detector.models.as_json() == original.detector.models.as_json()
    a, b = run(original, b3, force=True), run(restored, b3, force=True)
    assert scored(a) == scored(b)
    share_a = a.scores.features["new_model_share"]
    assert share_a.max() > 0.3
    # without the map, a worker starting at B3 takes the new model for one in use from its start
    c = run(forgetful, b3, force=True)
    assert c.scores.features["new_model_share"].max() == 0.0


def test_keep_only_keeps_the_workers_map() -> None:
    m = manager()
    b1, b2 = decoded(B1, 0), decoded(B2, 2000)
    run(m, b1)
    run(m, b2)
    m.prepare_checkpoint(offsets_after(b2))
    m.owned = set(range(N_PARTS))
    before = m.detector.models.as_json()
    m._keep_only({1})
    assert m.detector.models.as_json() == before


def test_a_marker_carries_worker_state_and_an_older_marker_has_none() -> None:
    worker = {"models": {"origin": 5, "newest": 9, "first_seen": {"m": 7}}}
    rows = decode_marker(marker_bytes(0, 1, LAYOUTS), LAYOUTS).rows
    value = encode_marker(Marker(0, 1, 0, 100, rows, LAYOUTS, worker))
    assert decode_marker(value, LAYOUTS).worker == worker
    assert decode_marker(marker_bytes(0, 1, LAYOUTS), LAYOUTS).worker == {}  # written without it


def test_a_checkpoint_from_before_the_new_model_counter_is_refused() -> None:
    layouts = store_layouts(manager().detector)
    now = layouts["account"]
    shrink = {"counters": (L.N_COUNTERS - 1,), "windows": (L.N_WINDOWS, L.N_WINDOW_Q - 1)}
    old_slots = tuple((n, d, (*s[:-1], shrink[n][-1]) if n in shrink else s) for n, d, s in now.slots)
    old = {**layouts, "account": StoreLayout(old_slots, now.partitions)}
    with pytest.raises(CheckpointLayoutError, match=r"counters .*\[3, 30\] -> .*\[3, 31\]") as info:
        decode_marker(marker_bytes(0, 1, old), layouts)
    assert "reset-offsets --to-current --reset-state" in str(info.value)
