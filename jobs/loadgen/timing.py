"""When an account calls: a renewal process run on a clock that follows the account's week.

Gaps are drawn in "operational time", where the account's rate is constant, and
mapped to real time through the inverse of its cumulative activity (time-rescaling).
That keeps the gap *shape* (bursty, Poisson, metronome) independent of the daily
curve, and draws thousands of arrivals per numpy call instead of one per event.

Most accounts follow their week (``weekly_profile``); the accounts of a group may follow the
group's ``Rhythm`` instead: a campaign's waves over the scenario, or a company's cron. Every
member maps its own arrivals through the same curve, so their counts per minute rise and fall
together while their gaps stay their own.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from jobs.loadgen.archetypes import Cron, Timing, Waves

HOUR_S = 3600.0
_MONDAY_SHIFT_S = 3 * 86_400.0  # 1970-01-01 was a Thursday; shift so the week starts on Monday
_FLOOR = 1e-3  # no hour is fully dead: keeps the cumulative curve strictly increasing
MINUTE_S = 60.0
_CRON_BIN_S = 5.0  # resolution of a cron's curve
_CRON_FLOOR = 1e-6  # between runs a scheduler sends (next to) nothing
_WAVE_NOISE = 0.15  # minute-to-minute lognormal texture of a campaign's rate
_REST_SIGMA = 0.8  # spread of human rests
_BATCH_SIGMA = 0.3  # spread of pauses between batch jobs


def weekly_profile(hourly: Sequence[float], weekend: float, tz_hours: int) -> np.ndarray:
    """168 activity multipliers, one per UTC hour of the week (Monday 00:00 UTC first), mean 1; read-only,
    one array shared by every account of the same curve and time zone (thousands of a fleet's members)."""
    if len(hourly) != 24:
        raise ValueError("an hourly profile has 24 values")
    return _weekly_profile(tuple(float(h) for h in hourly), float(weekend), int(tz_hours))


@functools.lru_cache(maxsize=1024)
def _weekly_profile(hourly: tuple[float, ...], weekend: float, tz_hours: int) -> np.ndarray:
    days = np.array([1.0] * 5 + [weekend] * 2)
    local = np.tile(np.asarray(hourly, dtype=np.float64), 7) * np.repeat(days, 24)
    # UTC hour i is local hour i + tz.
    utc = np.roll(local, -tz_hours)
    utc = np.maximum(utc / utc.mean(), _FLOOR)
    profile = utc / utc.mean()
    profile.flags.writeable = False
    return profile


class Clock:
    """Maps seconds since scenario start to cumulative activity ("load") and back.

    ``profile``: activity per ``bin_s`` bin of a curve that repeats; bin 0 starts where
    ``start_s + anchor_s`` is a multiple of the curve's length (the default: a week of hours
    starting on Monday 00:00 UTC).
    """

    __slots__ = ("_cum", "_grid", "_load0", "_origin", "_period", "_period_load")

    def __init__(self, profile: np.ndarray, start_s: float, *, bin_s: float = HOUR_S,
                 anchor_s: float = _MONDAY_SHIFT_S) -> None:
        self._grid = np.arange(profile.size + 1, dtype=np.float64) * bin_s
        self._cum = np.concatenate(([0.0], np.cumsum(profile * bin_s)))
        self._period = float(self._grid[-1])
        self._period_load = float(self._cum[-1])
        self._origin = start_s + anchor_s
        self._load0 = float(self._absolute_load(np.array([self._origin]))[0])

    def _absolute_load(self, tau: np.ndarray) -> np.ndarray:
        periods, rest = np.divmod(tau, self._period)
        return periods * self._period_load + np.interp(rest, self._grid, self._cum)

    def load(self, t: np.ndarray) -> np.ndarray:
        """Activity-weighted seconds between the start and ``t`` (equal to ``t`` for a flat curve)."""
        return self._absolute_load(np.asarray(t, dtype=np.float64) + self._origin) - self._load0

    def time_at(self, load: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`load`."""
        periods, rest = np.divmod(load + self._load0, self._period_load)
        return periods * self._period + np.interp(rest, self._cum, self._grid) - self._origin


@dataclass(frozen=True, slots=True)
class Rhythm:
    """A group's shared activity curve (mean 1), repeating every ``curve.size * bin_s`` seconds."""

    curve: np.ndarray
    bin_s: float
    anchor_s: float  # as Clock's: bin 0 starts where epoch seconds + anchor_s is a multiple of the length

    def clock(self, start_s: float) -> Clock:
        return Clock(self.curve, start_s, bin_s=self.bin_s, anchor_s=self.anchor_s)


def campaign_rhythm(rng: np.random.Generator, waves: Waves, *, start_s: float, duration_s: float) -> Rhythm:
    """A campaign's rate minute by minute from the scenario's start: lulls and active blocks in turn
    (the first one cut at a random point), each block at its own intensity."""
    minutes = max(1, math.ceil(duration_s / MINUTE_S))
    (lo_active, hi_active), (lo_lull, hi_lull) = waves.active_min, waves.lull_min
    # Enough lull/block pairs to cover the scenario after dropping up to one whole pair at the start.
    pairs = (minutes + hi_active + hi_lull) // max(1, lo_active + lo_lull) + 1
    lengths = np.column_stack([rng.integers(lo_lull, hi_lull + 1, pairs),
                               rng.integers(lo_active, hi_active + 1, pairs)]).ravel()
    levels = np.column_stack([np.full(pairs, waves.lull_level),
                              rng.lognormal(0.0, waves.intensity_sigma, pairs)]).ravel()
    skip = int(rng.integers(0, lengths[0] + lengths[1]))
    curve = np.repeat(levels, lengths)[skip : skip + minutes] * rng.lognormal(0.0, _WAVE_NOISE, minutes)
    curve = np.maximum(curve / curve.mean(), _FLOOR)
    return Rhythm(curve / curve.mean(), MINUTE_S, -start_s)


def cron_rhythm(rng: np.random.Generator, cron: Cron) -> Rhythm:
    """A company's schedule, as cron runs it (``M-59/P * * * *``): a run of ``burst_s`` seconds every
    ``period_min`` minutes of every hour from a minute offset of its own; next to nothing between runs."""
    period_min = int(rng.integers(cron.period_min[0], cron.period_min[1] + 1))
    per_minute = round(MINUTE_S / _CRON_BIN_S)
    burst = round(int(rng.integers(cron.burst_s[0], cron.burst_s[1] + 1)) / _CRON_BIN_S)
    burst = int(np.clip(burst, 1, period_min * per_minute // 2))  # a run ends well before the next one
    offset_min = int(rng.integers(0, min(period_min, 60)))
    curve = np.full(round(HOUR_S / _CRON_BIN_S), _CRON_FLOOR)
    for minute in range(offset_min, 60, period_min):
        curve[minute * per_minute : minute * per_minute + burst] = 1.0  # a run cut at the end of the hour
    return Rhythm(curve / curve.mean(), _CRON_BIN_S, 0.0)


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
