"""When an account calls: a renewal process run on a clock that follows the account's week.

Gaps are drawn in "operational time", where the account's rate is constant, and
mapped to real time through the inverse of its cumulative activity (time-rescaling).
That keeps the gap *shape* (bursty, Poisson, metronome) independent of the daily
curve, and draws thousands of arrivals per numpy call instead of one per event.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jobs.loadgen.archetypes import Timing

HOUR_S = 3600.0
WEEK_H = 168
WEEK_S = WEEK_H * HOUR_S
_MONDAY_SHIFT_S = 3 * 86_400.0  # 1970-01-01 was a Thursday; shift so the week starts on Monday
_FLOOR = 1e-3  # no hour is fully dead: keeps the cumulative curve strictly increasing
_REST_SIGMA = 0.8  # spread of human rests
_BATCH_SIGMA = 0.3  # spread of pauses between batch jobs


def weekly_profile(hourly: Sequence[float], weekend: float, tz_hours: int) -> np.ndarray:
    """168 activity multipliers, one per UTC hour of the week (Monday 00:00 UTC first), mean 1."""
    if len(hourly) != 24:
        raise ValueError("an hourly profile has 24 values")
    days = np.array([1.0] * 5 + [weekend] * 2)
    local = np.tile(np.asarray(hourly, dtype=np.float64), 7) * np.repeat(days, 24)
    # UTC hour i is local hour i + tz.
    utc = np.roll(local, -tz_hours)
    utc = np.maximum(utc / utc.mean(), _FLOOR)
    return utc / utc.mean()


class Clock:
    """Maps seconds since scenario start to cumulative activity ("load") and back."""

    __slots__ = ("_cum", "_grid", "_load0", "_origin", "_week_load")

    def __init__(self, profile: np.ndarray, start_s: float) -> None:
        self._grid = np.arange(WEEK_H + 1, dtype=np.float64) * HOUR_S
        self._cum = np.concatenate(([0.0], np.cumsum(profile * HOUR_S)))
        self._week_load = float(self._cum[-1])
        self._origin = start_s + _MONDAY_SHIFT_S
        self._load0 = float(self._absolute_load(np.array([self._origin]))[0])

    def _absolute_load(self, tau: np.ndarray) -> np.ndarray:
        weeks, rest = np.divmod(tau, WEEK_S)
        return weeks * self._week_load + np.interp(rest, self._grid, self._cum)

    def load(self, t: np.ndarray) -> np.ndarray:
        """Activity-weighted seconds between the start and ``t`` (equal to ``t`` for a flat week)."""
        return self._absolute_load(np.asarray(t, dtype=np.float64) + self._origin) - self._load0

    def time_at(self, load: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`load`."""
        weeks, rest = np.divmod(load + self._load0, self._week_load)
        return weeks * WEEK_S + np.interp(rest, self._cum, self._grid) - self._origin


class Arrivals:
    """Arrival times of one account, drawn ``n`` at a time, in seconds since the start."""

    __slots__ = ("_batch_len", "_batch_rest", "_clock", "_count", "_rate", "_rng", "_shape", "_timing",
                 "_u", "_unit")  # fmt: skip

    def __init__(
        self,
        rng: np.random.Generator,
        clock: Clock,
        rate: float,
        timing: Timing,
        *,
        batch_len: int,
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._rng = rng
        self._clock = clock
        self._rate = rate
        self._timing = timing
        self._shape = timing.regularity
        self._batch_len = batch_len
        idle = (1.0 / timing.duty - 1.0) if batch_len else 0.0
        # Mean in-session gap, chosen so the overall mean gap is 1 (rate is exact on average).
        self._unit = 1.0 / (1.0 + timing.rest_prob * timing.rest_scale + idle)
        self._batch_rest = batch_len * self._unit * idle
        self._count = 0
        # Start at a random point of a whole work/rest cycle before the scenario, so the
        # window opens mid-session or mid-rest as often as it would in steady state
        # (callers drop the arrivals that fall before the start).
        cycle = batch_len or (1.0 / timing.rest_prob if timing.rest_prob else 1.0)
        self._u = -float(rng.random()) * cycle

    def next(self, n: int) -> np.ndarray:
        rng, timing, unit = self._rng, self._timing, self._unit
        gaps = rng.gamma(self._shape, unit / self._shape, n)
        if timing.rest_prob > 0:
            rests = rng.random(n) < timing.rest_prob
            k = int(rests.sum())
            gaps[rests] += unit * timing.rest_scale * rng.lognormal(-0.5 * _REST_SIGMA**2, _REST_SIGMA, k)
        if self._batch_len:
            # Gap i leads to call count + i: pause before the first call of every batch (run).
            starts = np.flatnonzero((self._count + np.arange(n)) % self._batch_len == 0)
            gaps[starts] += self._batch_rest * rng.lognormal(-0.5 * _BATCH_SIGMA**2, _BATCH_SIGMA, starts.size)
        self._count += n
        u = self._u + np.cumsum(gaps)
        self._u = float(u[-1])
        return self._clock.time_at(u / self._rate)
