"""The lifecycle kernel: for, resolve_after, event time, and equality with the plain-Python reference."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.alerting.lifecycle import NONE, SubjectState, reference_lifecycle, step_lifecycle


def run(rows: list[tuple[int, int, bool]], *, for_minutes: int = 0, resolve_minutes: int = 15, max_gap: int = 0,
        groups: int = 1, now: int | None = None, state: tuple[np.ndarray, ...] | None = None):
    g = np.array([r[0] for r in rows], np.int64)
    m = np.array([r[1] for r in rows], np.int64)
    c = np.array([r[2] for r in rows], bool)
    pend, last, fire = state or tuple(np.full(groups, NONE, np.int64) for _ in range(3))
    return step_lifecycle(g, m, c, for_minutes=for_minutes, resolve_minutes=resolve_minutes, max_gap=max_gap,
                          pending=pend,
                          last_true=last, firing=fire, now_minute=now)


def fired_minutes(rows: list[tuple[int, int, bool]], **kw: object) -> list[int]:
    res = run(rows, **kw)  # type: ignore[arg-type]
    return [rows[i][1] for i in np.flatnonzero(res.fired)]


def test_for_zero_fires_on_the_first_true_frame_once() -> None:
    rows = [(0, m, ok) for m, ok in [(10, False), (11, True), (12, True), (13, True)]]
    assert fired_minutes(rows) == [11]


def test_for_needs_consecutive_true_minutes_and_a_gap_restarts_it() -> None:
    rows = [(0, m, True) for m in (0, 1, 2, 4, 5, 6, 7)]  # minute 3 missing: no calls, pending restarts
    assert fired_minutes(rows, for_minutes=3) == [7]
    rows = [(0, 0, True), (0, 1, True), (0, 2, False), (0, 3, True), (0, 4, True), (0, 5, True), (0, 6, True)]
    assert fired_minutes(rows, for_minutes=3) == [6]


def test_max_gap_lets_a_pending_run_skip_idle_and_false_minutes_up_to_it() -> None:
    # True at 0-2, idle 3-4, false 5, true from 6: three minutes without a true frame.
    rows = [(0, 0, True), (0, 1, True), (0, 2, True), (0, 5, False)] + [(0, m, True) for m in range(6, 12)]
    assert fired_minutes(rows, for_minutes=8, max_gap=3) == [8]  # pending since 0
    assert fired_minutes(rows, for_minutes=8, max_gap=2) == []  # restarted at 6: would fire at 14
    assert fired_minutes(rows, for_minutes=5, max_gap=2) == [11]
    res = run(rows[:4], for_minutes=8, max_gap=3)
    assert res.pending.tolist() == [0]  # the false frame at 5 is within the gap: still pending
    res = run(rows[:4], for_minutes=8, max_gap=2)
    assert res.pending.tolist() == [NONE]  # three minutes without a true frame: over


def test_resolves_after_the_quiet_period_in_event_time() -> None:
    rows = [(0, 0, True), (0, 1, True), (0, 5, False), (0, 16, False), (0, 17, True)]
    res = run(rows, resolve_minutes=15)
    # last true frame 1 ends at minute 2; quiet until 17: resolved at 17, noticed before row 4, which fires again
    assert res.resolved_minute.tolist() == [17] and res.resolved_before_row.tolist() == [4]
    assert np.flatnonzero(res.fired).tolist() == [0, 4]


def test_quiet_alerts_resolve_when_the_watermark_passes_and_not_before() -> None:
    rows = [(0, 100, True), (1, 100, True)]
    res = run(rows, groups=2, now=115, resolve_minutes=15)
    assert res.resolved_group.tolist() == [] and res.firing.tolist() == [100, 100]
    res = run(rows, groups=2, now=116, resolve_minutes=15)
    assert sorted(res.resolved_group.tolist()) == [0, 1] and res.resolved_minute.tolist() == [116, 116]
    assert res.resolved_before_row.tolist() == [2, 2]


def test_inputs_are_not_changed() -> None:
    state = tuple(np.full(1, NONE, np.int64) for _ in range(3))
    run([(0, 1, True)], state=state)
    assert all(a[0] == NONE for a in state)


@pytest.mark.parametrize("seed", range(6))
def test_kernel_equals_the_reference_on_random_rows(seed: int) -> None:
    rng = np.random.default_rng(seed)
    subjects = 25
    rows = []
    for s in range(subjects):
        minutes = np.sort(rng.choice(400, size=int(rng.integers(1, 200)), replace=False))
        truth = rng.random(len(minutes)) < rng.uniform(0.1, 0.9)
        rows += [(s, int(m), bool(t)) for m, t in zip(minutes, truth, strict=True)]
    for_minutes, resolve_minutes = int(rng.integers(0, 5)), int(rng.integers(1, 30))
    max_gap = 0 if seed < 3 else int(rng.integers(1, 6))
    now = 450
    res = run(rows, for_minutes=for_minutes, resolve_minutes=resolve_minutes, max_gap=max_gap, groups=subjects,
              now=now)
    fires = [(rows[i][0], rows[i][1] + 1) for i in np.flatnonzero(res.fired)]
    resolves = list(zip(res.resolved_group.tolist(), res.resolved_minute.tolist(), strict=True))
    ref_fires, ref_resolves = reference_lifecycle(rows, for_minutes, resolve_minutes, now, max_gap)
    assert fires == ref_fires and len(fires) > 0
    assert sorted(resolves) == sorted(ref_resolves)


@pytest.mark.parametrize("cut", [1, 7, 30, 55])
def test_state_carried_across_batches_gives_the_same_alerts(cut: int) -> None:
    rng = np.random.default_rng(cut)
    rows = [(0, m, bool(rng.random() < 0.6)) for m in range(60)]
    whole = run(rows, for_minutes=2, resolve_minutes=4)
    first = run(rows[:cut], for_minutes=2, resolve_minutes=4)
    # The JSON round trip is what a checkpoint does.
    saved = SubjectState(int(first.pending[0]), int(first.last_true[0]), int(first.firing[0])).to_json()
    back = SubjectState.from_json(saved)
    state = tuple(np.array([v], np.int64) for v in (back.pending, back.last_true, back.firing))
    second = run(rows[cut:], for_minutes=2, resolve_minutes=4, state=state)
    assert np.flatnonzero(whole.fired).tolist() == \
        np.flatnonzero(first.fired).tolist() + [cut + i for i in np.flatnonzero(second.fired)]
    assert whole.resolved_minute.tolist() == first.resolved_minute.tolist() + second.resolved_minute.tolist()


def test_subject_state_json_keeps_only_what_is_set() -> None:
    assert SubjectState().to_json() == {} and SubjectState().idle
    st = SubjectState(int(NONE), 5, 5, {"s": 360_000})
    assert SubjectState.from_json(st.to_json()) == st and not st.idle
