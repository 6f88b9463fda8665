"""API-key rows derived from the account's frames are exactly those of a store keeping every key.

The reference is the behaviour before ``pipeline/state/api_keys.py``: one key-store slot
per key, every event folded into it. The stream covers single-key accounts (derived),
an account gaining a second key, a key gaining a second account (in one batch and
across batches), late events, and a checkpoint/restore before and after such splits.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.decode.derived import derived_kernel_columns
from pipeline.decode.json_events import DecodedBatch
from pipeline.detect.detector import ACCOUNT_STORE, KEY_STORE, Detector
from pipeline.settings import load_settings
from pipeline.state.accounts import AccountRegistry
from pipeline.state.api_keys import SPLIT
from pipeline.state.frames import ClosedFrames, FrameStore
from pipeline.state.manager import StateManager
from tests.support.events import MINIMAL
from tests.support.state import (
    N_PARTS,
    SETTINGS,
    assert_same_state,
    decoded,
    manager,
    offsets_after,
    part_of,
    restore_in_memory,
)

T0 = 1_770_888_600_000
MINUTE = 60_000


class EveryKeyStore:
    """The key frames as they were: a slot for every key, every event folded into it."""

    def __init__(self) -> None:
        self.keys = AccountRegistry()
        self.frames = FrameStore(n_partitions=N_PARTS, allowed_lateness_ms=SETTINGS.allowed_lateness_ms,
                                 max_accounts=SETTINGS.max_accounts)

    def closed(self, batch: DecodedBatch, force: bool) -> ClosedFrames:
        columns = dict(batch.kernel)
        columns.update(derived_kernel_columns(batch.raw))  # type: ignore[arg-type]
        columns["slot"] = self.keys.slots_for(batch.raw["api_key_id"])  # type: ignore[arg-type]
        return Detector._fold(self.frames, columns, len(self.keys), force)[0]


def _event(n: int, account: int, key: str, ts: int) -> dict[str, Any]:
    return {**MINIMAL, "event_id": f"e{n}", "ts": ts, "account_id": f"org-{account}", "api_key_id": key,
            "client_ip": f"198.51.100.{n % 29}", "prompt_tokens": 10 + n % 700, "completion_tokens": n % 300,
            "prompt_hash": f"{(n * 2654435761) % 2**64:016x}", "temperature": (0.0, 0.7, 1.3)[n % 3],
            "status": (200, 200, 429, 500)[n % 4]}


def stream() -> list[dict[str, Any]]:
    """Events over 14 minutes; keys change hands in minutes 3 (within one batch), 6 and 9."""
    plan: list[tuple[int, int, str]] = []  # (minute, account, key)
    for minute in range(14):
        for a in range(10_000 + minute % 2, 12_200, 2):  # single-key accounts, more than a store's first capacity
            plan.append((minute, a, f"k-{a}"))
        for a in range(2000, 2010):  # one key, then from minute 6 a second one as well
            plan += [(minute, a, f"k-{a}")] + ([(minute, a, f"k2-{a}")] if minute >= 6 else [])
        for a in range(2010, 2015):  # two keys from the start
            plan += [(minute, a, f"k-{a}"), (minute, a, f"k2-{a}")]
        plan.append((minute, 2020, "shared"))  # from minute 7 org-2021 uses it too
        if minute >= 7:
            plan.append((minute, 2021, "shared"))
        plan.append((minute, 2031, "k-2031"))  # from minute 9 org-2030 uses org-2031's only key
        if minute >= 9:
            plan.append((minute, 2030, "k-2031" if minute % 2 else "k-2030"))
        if minute >= 10:
            plan.append((minute, 2040, "k2-2000"))  # a new account whose first key is already split
        if minute == 3:  # new account with two new keys, new key with two new accounts: one batch
            plan += [(3, 2050, "a"), (3, 2050, "b"), (3, 2060, "dup"), (3, 2061, "dup")]
    events = []
    for n, (minute, account, key) in enumerate(plan):
        ts = T0 + minute * MINUTE + (n * 7919) % MINUTE
        if n % 97 == 0 and minute >= 5:
            ts -= 5 * MINUTE  # late: behind the watermark by more than the allowed lateness
        events.append(_event(n, account, key, ts))
    return events


BATCH = 700


def batches(events: list[dict[str, Any]]) -> list[DecodedBatch]:
    return [decoded(events[i:i + BATCH], i) for i in range(0, len(events), BATCH)]


def key_rows(det: Detector, out: dict[str, object]) -> list[str]:
    cols = [np.asarray(v).tolist() if isinstance(v, np.ndarray) else list(v) for v in out.values()]  # type: ignore[call-overload]
    return [repr(row) for row in zip(*cols, strict=True)]


def test_key_rows_equal_a_store_of_every_key_and_only_split_keys_have_state() -> None:
    det, every = Detector(SETTINGS, N_PARTS), EveryKeyStore()
    all_batches = batches(stream())
    late = 0
    for i, batch in enumerate(all_batches):
        force = i == len(all_batches) - 1
        out = det.process(batch, force_close=force)
        want = det._key_rows(every.closed(batch, force))
        assert det.keys.names == every.keys.names  # same key ids: rows in the same order
        assert key_rows(det, out.key_signatures) == key_rows(det, want), f"batch {i}"
        late += out.late_events
    assert late > 0
    assert det.key_frames.part_late.tolist() == every.frames.part_late.tolist()
    split = set(det.api_keys.split.names)
    assert split == {f"k-{a}" for a in range(2000, 2015)} | {f"k2-{a}" for a in range(2000, 2015)} | {
        "shared", "k-2031", "k-2030", "a", "b", "dup"}
    assert det.key_frames.n_slots == len(split) and len(det.keys) > 1100  # single-key accounts took none


def run_and_compare(m: StateManager, every: EveryKeyStore | None, batch: DecodedBatch, force: bool) -> list[str]:
    out = m.detector.process(batch, force_close=force)
    if every is not None:
        want = m.detector._key_rows(every.closed(batch, force))
        assert key_rows(m.detector, out.key_signatures) == key_rows(m.detector, want)
    return sorted(key_rows(m.detector, out.key_signatures))


def test_key_rows_carry_on_exactly_across_a_checkpoint_before_and_after_splits() -> None:
    all_batches = batches(stream())
    for cut in (3, 8):  # before any split of a single-key account, and after most of them
        original, every = manager(), EveryKeyStore()
        for batch in all_batches[:cut]:
            run_and_compare(original, every, batch, False)
        log = original.prepare_checkpoint(offsets_after(all_batches[cut - 1]))
        restored = manager()
        restore_in_memory(original, restored, [*log.entities, *log.markers], {p: None for p in range(N_PARTS)})
        assert_same_state(original, restored)  # extras included: which account's key is derived
        for i, batch in enumerate(all_batches[cut:]):
            force = cut + i == len(all_batches) - 1
            assert run_and_compare(original, every, batch, force) == run_and_compare(restored, None, batch, force)
        # The state checkpointed after the splits restores to the same state again.
        again = manager()
        final = restored.prepare_checkpoint(offsets_after(all_batches[-1]))
        restore_in_memory(restored, again, [*log.entities, *log.markers, *final.entities, *final.markers],
                          {p: None for p in range(N_PARTS)})
        assert_same_state(restored, again)


def test_switching_key_tracking_on_starts_every_restored_account_keys_afresh() -> None:
    # A checkpoint written without key tracking has no key frames: the keys start empty, as before.
    off = manager()
    off.make_detector = lambda: Detector(load_settings(track_api_keys=False), N_PARTS)
    off.detector = off.make_detector()
    all_batches = batches(stream())
    off.detector.process(all_batches[0])
    log = off.prepare_checkpoint(offsets_after(all_batches[0]))
    on = manager()
    restore_in_memory(off, on, [*log.entities, *log.markers], {p: None for p in range(N_PARTS)})
    assert on.detector.api_keys.account_key[:len(on.detector.accounts)].tolist() == [SPLIT] * len(
        on.detector.accounts)
    every = EveryKeyStore()  # its key store starts empty too
    for i, batch in enumerate(all_batches[1:4]):
        run_and_compare(on, every, batch, i == 2)


def test_dropping_partitions_keeps_the_derived_keys_of_the_accounts_kept() -> None:
    events = stream()
    all_batches = batches(events)
    m, full = manager(), manager()
    for batch in all_batches[:3]:
        for x in (m, full):
            x.detector.process(batch)
    m.prepare_checkpoint(offsets_after(all_batches[2]))
    m.owned = set(range(N_PARTS))
    m._keep_only({0, 2})

    def single_key_rows(x: StateManager, out: dict[str, object]) -> list[str]:
        keep = [part_of(a) in (0, 2) and int(a.split("-")[1]) >= 10_000 for a in out["account_id"]]  # type: ignore[attr-defined]
        return sorted(r for r, k in zip(key_rows(x.detector, out), keep, strict=True) if k)

    seen = 0
    for i in range(3 * BATCH, len(events), BATCH):
        force = i + BATCH >= len(events)
        kept = decoded([e for e in events[i:i + BATCH] if part_of(e["account_id"]) in (0, 2)], i)
        got = single_key_rows(m, m.detector.process(kept, force_close=force).key_signatures)
        want = single_key_rows(full, full.detector.process(all_batches[i // BATCH], force_close=force).key_signatures)
        assert got == want
        seen += len(got)
    assert seen > 1000


def test_a_key_restored_with_frames_of_its_own_wins_over_an_account_deriving_it() -> None:
    # Blocks of two partitions can come from checkpoints of different ages (a key used in both).
    for key_first in (False, True):
        det = Detector(SETTINGS, N_PARTS)
        account = int(det.accounts.slots_for(["org-1"])[0])
        det.frames.ensure_slots(1)
        slot = int(det.api_keys.split.slots_for(["k"])[0])
        det.key_frames.ensure_slots(1)
        loads: list[tuple[str, int, dict[str, object]]] = [(ACCOUNT_STORE, account, {"api_key": "k"}),
                                                           (KEY_STORE, slot, {"account": "org-1"})]
        for store, at, extras in reversed(loads) if key_first else loads:
            det.load_entity_extras(store, at, extras)
        assert det.api_keys.account_key[account] == SPLIT
        assert det.api_keys.key_slot[det.keys.slot_of("k")] == slot and det.api_keys.split_key == [0]
