"""Synthetic calls per minute for the timing-correlation tests: fleets, and the hard negatives around them.

Everything is drawn from a seeded generator, one row per account, one column per minute.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pipeline.linking.messages import AccountUpdates, account_updates, pack_accounts
from pipeline.linking.observations import AccountSummary

START_MINUTE = 29_500_000  # 2026-02-01: a multiple of 10, so boundaries fall on the hour too


def diurnal(minutes: int, start: int = START_MINUTE) -> np.ndarray:
    """A shared daily curve (and a 6-hour wave): what every independent account follows."""
    t = np.arange(start, start + minutes)
    return 1 + 0.6 * np.sin(2 * np.pi * t / 1440) + 0.3 * np.sin(2 * np.pi * t / 360)


def campaign_waves(rng: np.random.Generator, minutes: int) -> np.ndarray:
    """A campaign's rate (mean 1): active blocks of 2-15 minutes at lognormal intensity, lulls of 2-20 at 2%."""
    pairs = minutes // 4 + 4
    lengths = np.column_stack([rng.integers(2, 21, pairs), rng.integers(2, 16, pairs)]).ravel()
    levels = np.column_stack([np.full(pairs, 0.02), rng.lognormal(0, 0.5, pairs)]).ravel()
    curve = np.repeat(levels, lengths)[:minutes] * rng.lognormal(0, 0.15, minutes)
    return curve / curve.mean()


def waves_fleet(rng: np.random.Generator, size: int, minutes: int, rate: float) -> np.ndarray:
    """A load balancer spreading one campaign over ``size`` accounts: each one's calls follow its waves."""
    rates = rate * rng.lognormal(-0.045, 0.3, size)
    return rng.poisson(np.outer(rates, campaign_waves(rng, minutes)))


def round_robin_fleet(rng: np.random.Generator, size: int, minutes: int, rate: float) -> np.ndarray:
    """A campaign whose fluctuating total is dealt round-robin over ``size`` accounts."""
    x = np.zeros(minutes)
    for t in range(1, minutes):  # AR(1) log-rate
        x[t] = 0.5 * x[t - 1] + rng.normal(0, 0.45)
    total = rng.poisson(rate * size * np.exp(x - 0.2) * diurnal(minutes))
    out = np.repeat((total // size)[None, :], size, axis=0)
    for t, extra in enumerate((total % size).tolist()):
        out[rng.choice(size, extra, replace=False), t] += 1
    return out


def independent(rng: np.random.Generator, n: int, minutes: int, low: float = 0.3, high: float = 50.0) -> np.ndarray:
    """Unrelated accounts at rates between ``low`` and ``high`` calls a minute, all on one diurnal curve."""
    rates = np.exp(rng.uniform(np.log(low), np.log(high), n))
    return rng.poisson(np.outer(rates, diurnal(minutes)))


def cron_crowd(rng: np.random.Generator, n: int, minutes: int, period: int) -> np.ndarray:
    """Unrelated accounts whose cron fires every ``period`` minutes from :00, over steady traffic."""
    base = rng.poisson(np.outer(np.exp(rng.uniform(0, np.log(20), n)), diurnal(minutes)))
    fires = (np.arange(START_MINUTE, START_MINUTE + minutes) % period) == 0
    base[:, fires] += rng.poisson(np.outer(np.exp(rng.uniform(np.log(10), np.log(200), n)), np.ones(fires.sum())))
    return base


def bare_cron(rng: np.random.Generator, n: int, minutes: int, period: int) -> np.ndarray:
    """Unrelated accounts that call almost only when their cron fires (every ``period`` minutes from :00), for
    one or two minutes."""
    out = rng.poisson(0.05, (n, minutes))
    fires = np.flatnonzero((np.arange(START_MINUTE, START_MINUTE + minutes) % period) == 0)
    sizes = np.exp(rng.uniform(np.log(5), np.log(100), n))
    for i, length in enumerate(rng.integers(1, 3, n).tolist()):
        for f in fires.tolist():
            out[i, f:f + length] += rng.poisson(sizes[i], min(length, minutes - f))
    return out


def hourly_jobs(rng: np.random.Generator, n: int, minutes: int, longest: int = 24, boost: float = 5.0) -> np.ndarray:
    """Unrelated accounts running a job every hour at :00 for 1 to ``longest`` minutes (at ``boost`` times their
    rate), over steady traffic."""
    rates = np.exp(rng.uniform(0, np.log(20), n))
    out = rng.poisson(np.outer(rates, diurnal(minutes)))
    hours = np.flatnonzero((np.arange(START_MINUTE, START_MINUTE + minutes) % 60) == 0)
    for i, length in enumerate(rng.integers(1, longest + 1, n).tolist()):
        for h in hours.tolist():
            stop = min(h + length, minutes)
            out[i, h:stop] += rng.poisson(rates[i] * boost, stop - h)
    return out


def updates(names: Sequence[str], counts: np.ndarray, *, start: int = START_MINUTE, per_message: int = 1,
            src: str = "detect-1", scores: Mapping[str, float] | None = None) -> list[AccountUpdates]:
    """The account updates a detect worker sends for these counts: one message per ``per_message`` minutes,
    each with the frames (account, minute, calls, ``scores`` or 0) that closed in it."""
    out = []
    minutes = counts.shape[1]
    max_scores = dict(scores or {})
    for first in range(0, minutes, per_message):
        rows, cols = np.nonzero(counts[:, first:first + per_message])
        frame_accounts = [names[i] for i in rows.tolist()]
        per_row = counts[:, first:first + per_message].sum(axis=1)
        active = sorted(set(rows.tolist()), key=lambda i: names[i])
        distinct = [names[i] for i in active]
        calls = per_row[active].astype(np.int64)
        last_ts = (start + first + per_message) * 60_000 - 1
        summary = AccountSummary(distinct, calls, np.zeros(len(distinct), np.int64),
                                 np.full(len(distinct), last_ts, np.int64))
        starts = (start + first + cols).astype(np.int64) * 60
        frame_scores = np.array([max_scores.get(a, 0.0) for a in frame_accounts])
        out.append(account_updates(summary, frame_accounts, starts, frame_scores, max_scores, src,
                                   counts[rows, first + cols]))
    return out


def encoded(names: Sequence[str], counts: np.ndarray, **kw: Any) -> list[bytes]:
    return [value for u in updates(names, counts, **kw) for value in pack_accounts(u)]
