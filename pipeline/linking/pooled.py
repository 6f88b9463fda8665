"""Pooled cluster evidence: score what a cluster's members take *together*.

``pooled_score`` sums the members' per-minute ``POOLED`` counters over ``window_minutes`` up to
an event time and scores them with the scoring's own feature code, ramps, weights and volume
gate, for exactly the signals computable from those sums (``PooledScorer.signals``, derived, not
listed). One function serves stage B live (``PooledEvidence.at``), the alert times
(``PooledEvidence.minutes``) and the backtest (``jobs/backtest_clusters``). ``PooledEvidence``
keeps the counters in a ``timing.CounterRing``; minutes past the horizon read as 0, so the
evidence is a function of the frames, not of their arrival. Details: docs/linking.md
("Pooled cluster evidence").
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Final

import numpy as np

from pipeline.kernels import layout as L
from pipeline.linking.config import LinkingConfig
from pipeline.linking.messages import AccountUpdates
from pipeline.linking.sync_tracker import ring_minutes
from pipeline.linking.timing import COLUMNS, CounterRing, frame_values
from pipeline.scoring.config import ScoringConfig, load_scoring_config
from pipeline.scoring.features import FEATURES
from pipeline.scoring.model import GATE_FEATURES, signal_points
from pipeline.state.closed_frames import ClosedFrames

MINUTE_MS: Final = L.FRAME_MS  # a frame is one minute of event time
POOLED: Final = COLUMNS  # the ring's columns, in this order
_COLUMNS: Final = tuple(L.COUNTER_NAMES.index(name) for name in POOLED)  # their frame counter index


def _frames(windows: np.ndarray) -> ClosedFrames:
    n = len(windows)
    return ClosedFrames(np.zeros(n, np.int32), np.zeros(n, np.int64), np.zeros((n, L.N_COUNTERS), np.int64),
                        np.zeros((n, L.N_FLOATS)), np.zeros((n, L.N_DISTINCT), np.int64), windows)


@cache
def feature_inputs(name: str) -> frozenset[tuple[int, int]]:
    """The (window, quantity) cells of a frame's rolled windows that feature ``name`` reads: each cell is
    changed alone on a copy of a random frame, and the feature's value compared (two draws at two scales,
    so a clip or a floor that hides a cell in one shows it in the other)."""
    cells = L.N_WINDOWS * L.N_WINDOW_Q
    rng = np.random.default_rng(1217)
    found: set[int] = set()
    for low, high in ((2.0, 12.0), (20.0, 400.0)):
        windows = np.tile(rng.uniform(low, high, cells), (cells + 1, 1))
        windows[np.arange(1, cells + 1), np.arange(cells)] *= 1.5
        out = FEATURES[name](_frames(windows.reshape(cells + 1, L.N_WINDOWS, L.N_WINDOW_Q)))
        found.update(np.flatnonzero(out[1:] != out[0]).tolist())
    return frozenset(divmod(c, L.N_WINDOW_Q) for c in found)


def poolable(feature: str) -> bool:
    """A feature computable from the pooled sums: it reads 60-minute window counters of ``POOLED`` only."""
    inputs = feature_inputs(feature)
    return bool(inputs) and inputs <= {(L.W60, c) for c in _COLUMNS}


@dataclass(frozen=True)
class PooledScore:
    """A group's pooled score at one time, with what it is made of (for the explanation)."""

    score: float = 0.0  # 0..100
    points: Mapping[str, float] = field(default_factory=dict)  # pooled signal -> points (> 0 only)
    members: int = 0  # members with calls in the window
    calls: int = 0  # their calls in the window

    def explain(self) -> str:
        """E.g. ``pooled: reasoning_elicitation 40, output_harvest 20 over 12 members' 48 calls``."""
        shown = sorted(((round(p), n) for n, p in self.points.items() if round(p) >= 1), key=lambda x: (-x[0], x[1]))
        what = ", ".join(f"{n} {p}" for p, n in shown) or "no signal"
        return f"pooled: {what} over {self.members} members' {self.calls} calls"


class PooledScorer:
    """The scoring config applied to pooled sums: the signals whose features are all poolable."""

    def __init__(self, scoring: ScoringConfig | None = None) -> None:
        self.scoring = scoring or load_scoring_config()
        if not all(map(poolable, GATE_FEATURES)):
            raise ValueError(f"the volume gate's features {GATE_FEATURES} must be computable from {POOLED}")
        self.signals = tuple(name for name, s in self.scoring.signals.items() if all(map(poolable, s.ramps)))
        self.features = sorted({f for n in self.signals for f in self.scoring.signals[n].ramps} | set(GATE_FEATURES))

    def series(self, sums: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pooled scores (``[T]``, rounded to 0.01) and points (``[T, len(signals)]``) of window sums
        ``[T, len(POOLED)]``."""
        sums = np.atleast_2d(np.asarray(sums, np.float64))
        windows = np.zeros((len(sums), L.N_WINDOWS, L.N_WINDOW_Q))
        windows[:, L.W60, list(_COLUMNS)] = sums
        frames = _frames(windows)
        points = signal_points({f: FEATURES[f](frames) for f in self.features}, self.scoring, self.signals)
        return np.round(np.minimum(points.sum(axis=1), 100.0), 2), points

    def score(self, sums: np.ndarray, members: int) -> PooledScore:
        """The pooled score of one window's sums (``[len(POOLED)]``) over ``members`` members with calls."""
        score, points = self.series(sums)
        named = {n: round(float(p), 2) for n, p in zip(self.signals, points[0].tolist(), strict=True) if p > 0}
        return PooledScore(float(score[0]), named, members, int(np.asarray(sums)[0]))


@dataclass(frozen=True)
class MemberMinutes:
    """Members' counters per minute from ``start``: ``values[i, j]`` is member i's minute ``start + j``."""

    start: int
    values: np.ndarray  # float64 [members, minutes, len(POOLED)]


# A bounded run (replay, eval) evaluates its cluster alerts at the drain, over the whole input: the
# ring then covers a day of event time (a day's replay at 32 B per account-minute: 46 KB per account).
BOUNDED_HISTORY_MINUTES = 1440
READER = "pooled"  # the evidence's name among the ring's readers (``CounterRing.evict``)


class PooledEvidence:
    """Stage B's pooled evidence: the members' recent counters per minute, and their pooled score."""

    def __init__(self, config: LinkingConfig, scoring: ScoringConfig | None = None, *, bounded: bool = False,
                 shared: bool = False) -> None:
        """``bounded``: cluster alerts are evaluated once, at the drain (``stages`` ``defer_alerts``), so the
        ring keeps ``BOUNDED_HISTORY_MINUTES`` (or the configured history, if longer) for them to look back on.
        ``shared``: the ring is the timing evidence's too (``SyncTracker(ring=...)``), as wide as it needs, and
        the tracker writes each message's frames, minute by minute, before ``handle`` sees the message."""
        self.window = config.pooled.window_minutes
        history = config.pooled.history_minutes
        if bounded:
            history = max(history, BOUNDED_HISTORY_MINUTES)
        self.span = config.pooled.window_minutes + history  # minutes known: the horizon is the newest minus these
        self.shared = shared
        self.ring = CounterRing(max(self.span, ring_minutes(config, bounded)) if shared else self.span)
        self.ring.holds[READER] = -1  # every slot is needed until the first eviction
        self.scorer = PooledScorer(scoring)
        self.newest = -1  # newest minute held
        self.frames = 0

    @property
    def horizon(self) -> int:
        """The oldest minute known: earlier ones read as 0 whatever the ring still holds."""
        return self.newest - self.span + 1

    def handle(self, updates: AccountUpdates) -> None:
        """Apply one message's frames (a message without the counters, version 2 or older, brings none)."""
        if not updates.frame_minute or not updates.frame_counters:
            return
        minutes = np.asarray(updates.frame_minute, np.int64)
        if not self.shared:
            names = np.asarray(updates.account, dtype=object)[np.asarray(updates.frame_account, np.int64)].tolist()
            self.ring.put_many(self.ring.slots_of(names), minutes, frame_values(updates)[0])
        self.frames += len(minutes)
        self.newest = max(self.newest, int(minutes.max()))
        self.ring.evict(self.horizon, READER)

    def minutes(self, members: Sequence[str], first: int | None = None) -> MemberMinutes:
        """``members``' counters per minute from ``first`` (at least the horizon) to the newest minute."""
        start = self.horizon if first is None else max(first, self.horizon)
        length = max(self.newest - start + 1, 0)
        slots = np.fromiter((self.ring.slots.get(m, -1) for m in members), np.int64, len(members))
        out = np.zeros((len(members), length, len(POOLED)))
        held = slots >= 0
        if held.any() and length:
            out[held] = self.ring.matrix(slots[held], start, length)
        return MemberMinutes(start, out)

    def at(self, members: Collection[str], ts_ms: int) -> PooledScore:
        """The pooled score of ``members`` at event time ``ts_ms``: frames ended by then, the last ``window``."""
        last = ts_ms // MINUTE_MS - 1
        got = self.minutes(sorted(members), last - self.window + 1)
        rows = got.values[:, : max(last - got.start + 1, 0)].sum(axis=1)  # [members, columns]
        return self.scorer.score(rows.sum(axis=0), int((rows[:, 0] > 0).sum()))

    # --- checkpoint and stats --------------------------------------------------------------------

    def section(self) -> dict[str, list[Any]]:
        return self.ring.section()

    def restore(self, section: Mapping[str, Sequence[Any]]) -> None:
        """The ring back (with the timing evidence's calls when ``shared``)."""
        self.ring.restore(section)
        self.newest = max(self.ring.newest_counted(), self.newest)
        self.ring.evict(self.horizon, READER)

    def as_dict(self) -> dict[str, object]:
        return {"pooled_accounts": len(self.ring), "pooled_ring_bytes": self.ring.nbytes(),
                "pooled_frames": self.frames, "pooled_signals": list(self.scorer.signals)}
