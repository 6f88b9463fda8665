"""account_updates (vectorised) equals the plain per-row rule it replaced, on random batches."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pytest

from pipeline.linking.messages import AccountUpdates, account_updates
from pipeline.linking.observations import AccountSummary


def reference(summary: AccountSummary, frame_accounts: Sequence[str], frame_start_s: np.ndarray,
              frame_score: np.ndarray, max_scores: Mapping[str, float], src: str,
              frame_calls: Sequence[int]) -> AccountUpdates:
    calls = dict(zip(summary.accounts, summary.calls.tolist(), strict=True))
    last_ts = dict(zip(summary.accounts, summary.last_ts_ms.tolist(), strict=True))
    latest: dict[str, tuple[int, float]] = {}
    best: dict[str, tuple[float, int]] = {}
    for a, start, score in zip(frame_accounts, np.asarray(frame_start_s).tolist(),
                               np.asarray(frame_score).tolist(), strict=True):
        end_ms, value = (int(start) + 60) * 1000, round(float(score), 3)
        if a not in latest or end_ms >= latest[a][0]:
            latest[a] = (end_ms, value)
        if a not in best or (value, -end_ms) > (best[a][0], -best[a][1]):
            best[a] = (value, end_ms)
    names = sorted(calls.keys() | latest.keys())
    frame = [latest.get(a) for a in names]
    top = [best.get(a) for a in names]
    # Every frame with calls, by account then minute (frames of one account and minute in row order).
    counted = sorted((names.index(a), int(start) // 60, i, int(n)) for i, (a, start, n) in
                     enumerate(zip(frame_accounts, np.asarray(frame_start_s).tolist(), frame_calls, strict=True)) if n)
    return AccountUpdates(
        src, names, [int(calls.get(a, 0)) for a in names],
        [max(int(last_ts.get(a, 0)), f[0] if f else 0) for a, f in zip(names, frame, strict=True)],
        [f[1] if f else None for f in frame],
        [round(float(max_scores.get(a, f[1])), 3) if f else None for a, f in zip(names, frame, strict=True)],
        [b[0] if b else None for b in top], [b[1] if b else None for b in top],
        [c[0] for c in counted], [c[1] for c in counted], [c[3] for c in counted],
    )


@pytest.mark.parametrize("seed", range(40))
def test_vectorised_updates_equal_the_per_row_rule(seed: int) -> None:
    rng = np.random.default_rng(seed)
    pool = [f"org-{i}" for i in range(int(rng.integers(1, 30)))]
    with_calls = sorted(set(rng.choice(pool, size=int(rng.integers(0, len(pool) + 1))).tolist()))
    summary = AccountSummary(with_calls, rng.integers(1, 50, len(with_calls)).astype(np.int64),
                             np.zeros(len(with_calls), np.int64),
                             rng.integers(1_770_000_000_000, 1_770_000_900_000, len(with_calls)).astype(np.int64))
    n = int(rng.integers(0, 60))
    frame_accounts = rng.choice(pool, size=n).tolist()
    # Few distinct minutes and coarse scores: equal ends and equal rounded scores happen often.
    starts = (1_770_000_000 + 60 * rng.integers(0, 15, n)).astype(np.int64)
    scores = np.round(rng.choice([0.0, 12.5, 40.0004, 40.0001, 87.25, 99.9996], size=n) + rng.normal(0, 1e-5, n) *
                      rng.integers(0, 2, n), 6)
    max_scores = {a: float(rng.uniform(0, 100)) for a in pool if rng.random() < 0.7}
    calls = rng.integers(0, 4, n) * rng.integers(0, 2, n)  # zeros (no calls in a frame) are left out
    got = account_updates(summary, frame_accounts, starts, scores, max_scores, "src", calls)
    assert got == reference(summary, frame_accounts, starts, scores, max_scores, "src", calls.tolist())
    assert account_updates(summary, frame_accounts, starts, scores, max_scores, "src").frame_calls == []
