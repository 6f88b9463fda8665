"""Detector state → checkpoint records → a fresh Detector: it carries on exactly as the original."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from pipeline.alerting.lifecycle import NONE
from pipeline.decode.json_events import DecodedBatch
from pipeline.detect.detector import ACCOUNT_STORE, DetectionOutput
from pipeline.state.checkpoint import CheckpointLayoutError, decode_block, is_marker_key
from pipeline.state.frames import FrameStore
from pipeline.state.manager import StateManager
from pipeline.state.snapshot import store_layouts
from pipeline.state.state_topic import Record
from tests.support.state import (
    EVENTS,
    N_PARTS,
    assert_same_state,
    decoded,
    manager,
    offsets_after,
    part_of,
    restore_in_memory,
)


def members(records: list[Record]) -> set[str]:
    layouts = store_layouts(manager().detector)
    out = set()
    for _, key, value in records:
        rec = decode_block(key, value, layouts) if value is not None and not is_marker_key(key) else None
        out |= {f"{rec.store}/{n}" for n in rec.names} if rec else set()
    return out


def rows_of(out: DetectionOutput) -> list[dict[str, Any]]:
    sig = out.signatures
    cols = {c: np.asarray(v).tolist() if isinstance(v, np.ndarray) else list(v) for c, v in sig.items()}  # type: ignore[call-overload]
    rows = [dict(zip(cols, values, strict=True)) for values in zip(*cols.values(), strict=True)]
    return sorted(rows, key=lambda r: (r["account_id"], r["window_start"]))


def run(m: StateManager, batch: DecodedBatch, force: bool = False) -> DetectionOutput:
    return m.detector.process(batch, force_close=force)


FIRST, SECOND = EVENTS[:2500], EVENTS[2500:]


def test_a_detector_restored_from_a_checkpoint_carries_on_exactly_like_the_original() -> None:
    original, restored = manager(), manager()
    b1, b2 = decoded(FIRST, 0), decoded(SECOND, 2500)
    run(original, b1)
    prepared = original.prepare_checkpoint(offsets_after(b1))
    records = [*prepared.entities, *prepared.markers]
    assert sum(is_marker_key(k) for _, k, _ in records) == N_PARTS
    restore_in_memory(original, restored, records, committed={p: None for p in range(N_PARTS)})
    assert restored.positions == offsets_after(b1)
    assert restored.detector.alert_state.subjects == original.detector.alert_state.subjects
    assert any(s.firing != NONE for r in original.detector.alert_state.subjects.values() for s in r.values()), \
        "no alert fired: the alert state went untested"
    assert restored.detector.max_score == original.detector.max_score
    a, b = run(original, b2, force=True), run(restored, b2, force=True)
    assert rows_of(a) == rows_of(b)
    assert a.alerts.alert_id == b.alerts.alert_id
    assert sorted(map(repr, zip(*a.key_signatures.values(), strict=True))) == \
        sorted(map(repr, zip(*b.key_signatures.values(), strict=True)))


def test_only_blocks_with_a_changed_member_are_written_again() -> None:
    m = manager()
    b1 = decoded(FIRST, 0)
    run(m, b1)
    first = m.prepare_checkpoint(offsets_after(b1))
    one_account = [e for e in SECOND if e["account_id"] == "org-4"][:5]
    b2 = decoded(one_account, 2500)
    run(m, b2)
    second = m.prepare_checkpoint(offsets_after(b2))
    changed = {"account/org-4", *(f"api_key/{e['api_key_id']}" for e in one_account)}
    # Each changed entity's whole block is rewritten, and nothing of other partitions.
    assert changed <= members(second.entities) < members(first.entities)
    assert {k.decode().split("/")[1] for _, k, _ in second.entities} == {str(part_of("org-4"))}
    assert [k for _, k, _ in second.markers] == [f"__partition__/{part_of('org-4')}".encode()]
    assert m.seq[part_of("org-4")] == 2
    assert m.prepare_checkpoint({}).records == 0  # nothing changed since


def test_a_checkpoint_is_a_few_large_records_not_one_per_entity() -> None:
    m = manager()
    b1 = decoded(FIRST, 0)
    run(m, b1)
    prepared = m.prepare_checkpoint(offsets_after(b1))
    entities = len(m.detector.accounts) + len(m.detector.keys)
    assert len(prepared.entities) <= 2 * N_PARTS < entities  # one block per store and partition here
    assert len(members(prepared.entities)) == entities


def test_a_crash_between_checkpoint_and_commit_resumes_after_the_checkpoint() -> None:
    original, restored = manager(), manager()
    b1 = decoded(FIRST, 0)
    run(original, b1)
    prepared = original.prepare_checkpoint(offsets_after(b1))
    # The commit never happened: the group's offsets are where an earlier commit left them.
    restore_in_memory(original, restored, [*prepared.entities, *prepared.markers],
                      committed={0: 10, 1: 10, 2: None})
    assert restored.positions == offsets_after(b1)


def test_an_array_added_to_the_store_is_checkpointed_without_other_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    fresh = FrameStore._fresh

    def with_extra(self: FrameStore, capacity: int) -> dict[str, np.ndarray]:
        arrays = fresh(self, capacity)
        arrays["test_extra"] = np.zeros((capacity, 4), np.uint16)
        return arrays

    monkeypatch.setattr(FrameStore, "_fresh", with_extra)
    original, restored = manager(), manager()
    b1 = decoded(FIRST, 0)
    run(original, b1)
    registry, frames = original.detector.state_stores()[ACCOUNT_STORE]
    extra = frames.slot_arrays()["test_extra"]
    extra[: len(registry)] = np.arange(len(registry) * 4, dtype=np.uint16).reshape(-1, 4) + 1
    frames.mark_dirty(np.arange(len(registry)))
    prepared = original.prepare_checkpoint(offsets_after(b1))
    restore_in_memory(original, restored, [*prepared.entities, *prepared.markers], {p: None for p in range(3)})
    r_registry, r_frames = restored.detector.state_stores()[ACCOUNT_STORE]
    for account in registry.names:
        got = r_frames.slot_arrays()["test_extra"][r_registry.slot_of(account)]
        assert np.array_equal(got, extra[registry.slot_of(account)])

    # A worker without the array refuses that checkpoint instead of misreading it.
    monkeypatch.setattr(FrameStore, "_fresh", fresh)
    with pytest.raises(CheckpointLayoutError, match="test_extra"):
        restore_in_memory(original, manager(), [*prepared.entities, *prepared.markers], {p: None for p in range(3)})


def test_keep_only_drops_other_partitions_and_keeps_the_rest_intact() -> None:
    m, reference = manager(), manager()
    b1, b2 = decoded(FIRST, 0), decoded(SECOND, 2500)
    for x in (m, reference):
        run(x, b1)
        x.prepare_checkpoint(offsets_after(b1))
        x.owned = set(range(N_PARTS))
    m._keep_only({0, 2})
    names = set(m.detector.accounts.names)
    assert names and all(part_of(a) in (0, 2) for a in names)
    assert set(m.positions) == {0, 2}
    kept = [e for e in SECOND if part_of(e["account_id"]) in (0, 2)]
    a = run(m, decoded(kept, 2500), force=True)
    b = run(reference, b2, force=True)
    assert rows_of(a) == [r for r in rows_of(b) if part_of(r["account_id"]) in (0, 2)]


def test_orphans_of_a_partition_without_any_checkpoint_are_removed_once_its_position_is_known() -> None:
    # The worker died during its very first checkpoint: entity records, no marker, no commit.
    original, restored = manager(), manager()
    b1 = decoded([e for e in FIRST if part_of(e["account_id"]) == 0], 0)
    run(original, b1)
    prepared = original.prepare_checkpoint(offsets_after(b1))
    restore_in_memory(original, restored, list(prepared.entities), {p: None for p in range(N_PARTS)})
    assert len(restored.detector.accounts) == 0 and 0 not in restored.positions
    assert restored.prepare_checkpoint({}).records == 0  # nothing to say yet about partition 0
    after = restored.prepare_checkpoint({0: 7})
    assert sorted(k for _, k, v in after.entities if v is None) == sorted(k for _, k, _ in prepared.entities)
    assert [k for _, k, _ in after.markers] == [b"__partition__/0"]
    assert restored.seq[0] == original.seq[0] + 1  # above the orphans' seq


def checkpoint(m: StateManager, batch: DecodedBatch) -> list[Record]:
    run(m, batch)
    prepared = m.prepare_checkpoint(offsets_after(batch))
    return [*prepared.entities, *prepared.markers]


def test_the_restored_state_is_bit_for_bit_the_checkpointed_one_also_after_compaction() -> None:
    original = manager()
    log: list[Record] = []
    for start in range(0, 4000, 700):  # several checkpoints, each changing some entities
        log += checkpoint(original, decoded(EVENTS[start:start + 700], start))
    restored = manager()
    restore_in_memory(original, restored, log, {p: None for p in range(N_PARTS)})
    assert_same_state(original, restored)
    assert restored.positions == original.positions and restored.seq == original.seq
    # Compaction keeps only the latest record per key: that alone restores the same state.
    latest = {(p, k): i for i, (p, k, _) in enumerate(log)}
    compacted = [r for i, r in enumerate(log) if latest[(r[0], r[1])] == i]
    assert len(compacted) < len(log)
    again = manager()
    restore_in_memory(original, again, compacted, {p: None for p in range(N_PARTS)})
    assert_same_state(original, again)


def test_an_unfinished_checkpoint_is_ignored_and_its_blocks_rewritten_by_the_next_one() -> None:
    original, reference = manager(), manager()
    b1, b2, b3 = decoded(EVENTS[:1500], 0), decoded(EVENTS[1500:2500], 1500), decoded(EVENTS[2500:], 2500)
    log = checkpoint(original, b1)
    checkpoint(reference, b1)
    # The worker dies after writing some block records of its second checkpoint, before any marker.
    unfinished = [r for r in checkpoint(original, b2) if not is_marker_key(r[1])]
    assert len(unfinished) > 2
    log += unfinished[: len(unfinished) // 2 + 1]
    restored = manager()
    restore_in_memory(original, restored, log, {p: None for p in range(N_PARTS)})
    assert_same_state(reference, restored)  # the state of the first checkpoint, not a mix
    assert restored.positions == offsets_after(b1)
    # The restarted worker re-reads b2 (and b3) and checkpoints: its first checkpoint rewrites every
    # block the orphans touched, above their seq; a later restore finds exactly its state.
    log += checkpoint(restored, b2)
    log += checkpoint(restored, b3)
    checkpoint(reference, b2)
    checkpoint(reference, b3)
    assert_same_state(reference, restored)
    last = manager()
    restore_in_memory(restored, last, log, {p: None for p in range(N_PARTS)})
    assert_same_state(reference, last)
    orphan_seq = max(original.seq.values())
    assert all(restored.seq[p] > orphan_seq for p in range(N_PARTS))


def test_a_partition_dropped_and_kept_keeps_its_block_places() -> None:
    m = manager()
    m.owned = set(range(N_PARTS))
    first = checkpoint(m, decoded(FIRST, 0))
    m._keep_only({1})
    # The next change of a partition-1 entity rewrites the same block key as before, with the same members.
    second = checkpoint(m, decoded([e for e in SECOND if part_of(e["account_id"]) == 1], 2500))
    before = {k: v for p, k, v in first if p == 1 and v is not None and not is_marker_key(k)}
    after = {k: v for p, k, v in second if v is not None and not is_marker_key(k)}
    assert after.keys() <= before.keys() and after
    layouts = store_layouts(m.detector)
    for key, value in after.items():
        old, new = decode_block(key, before[key], layouts), decode_block(key, value, layouts)
        assert old is not None and new is not None
        assert dict(zip(old.names, old.ordinals.tolist(), strict=True)).items() <= \
            dict(zip(new.names, new.ordinals.tolist(), strict=True)).items()
