"""Timing evidence for stage A: per-minute call counts in, ``sync:`` feature memberships out.

``SyncTracker.handle`` writes each account-update message's closed frames into a
``timing.CounterRing`` (shared with the pooled evidence) and, at event-time boundaries aligned
for everyone, runs ``sync.find_groups`` over the window before each; every group becomes members
of one ``sync:<8 hex>`` feature, handed to stage A as an ``ObservationBatch``. Invariant: the
evidence depends on the frames only, not on how they were cut or interleaved (a bounded run
waits ``BOUNDED_SETTLE_MINUTES`` and evaluates the rest at the drain, ``flush``). Checkpointed:
``member_of`` and ``clock``. When, the two windows, which feature, the checkpoint:
docs/linking.md ("Timing correlation (`sync`)").
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.hashing import stable_id
from pipeline.kernels.layout import FRAME_MS
from pipeline.linking.config import LinkingConfig
from pipeline.linking.messages import AccountUpdates, ObservationBatch
from pipeline.linking.sync import Group, find_groups
from pipeline.linking.timing import CounterRing, frame_values

PREFIX = "sync:"
MINUTE_MS = FRAME_MS  # a frame is one minute of event time
_R_SCALE = 1000  # sample = window minutes << 24 | active minutes << 16 | round(r × 1000)
# A bounded run waits this long for a boundary's frames (or the drain): partitions replayed out of step by
# less than a day still give every boundary all its frames. The ring grows by as much.
BOUNDED_SETTLE_MINUTES = 1440
READER = "sync"  # the tracker's name among the ring's readers (``CounterRing.evict``)


def settle_minutes(config: LinkingConfig, bounded: bool) -> int:
    """How long a boundary waits for later frames: ``SyncConfig.settle_minutes``, at least a day when bounded."""
    settle = config.sync.settle_minutes
    return max(settle, BOUNDED_SETTLE_MINUTES) if bounded else settle


def ring_minutes(config: LinkingConfig, bounded: bool) -> int:
    """Minutes the tracker needs the ring to hold: ``SyncConfig.ring_minutes`` with that wait."""
    return config.sync.ring_minutes - config.sync.settle_minutes + settle_minutes(config, bounded)


def pack_sample(r: float, active: int, window: int = 0) -> int:
    return int(window) << 24 | int(active) << 16 | max(0, min(_R_SCALE, round(r * _R_SCALE)))


def unpack_sample(sample: int) -> tuple[float, int]:
    """(member's mean Pearson r with its group, its active minutes in that window)."""
    return (sample & 0xFFFF) / _R_SCALE, (sample >> 16) & 0xFF


def sample_window(sample: int) -> int:
    """The minutes of the window a sample was measured over (0: an older sample, the main window)."""
    return sample >> 24


@dataclass
class SyncTotals:
    """Counters since start (``/stats`` under ``linking``)."""

    boundaries: int = 0
    eligible: int = 0  # at the last boundary
    candidates: int = 0
    edges: int = 0
    groups: int = 0
    grouped: int = 0
    popular_groups: int = 0  # groups dropped: they continued a popular sync feature
    periodic: int = 0
    repeating: int = 0
    stepped: int = 0
    widely_followed: int = 0  # groups dropped: the platform's curve, not a fleet's
    seconds: float = 0.0
    last_s: float = 0.0  # the last boundary's time


class SyncTracker:
    def __init__(self, config: LinkingConfig, features: Mapping[str, dict[str, object]], *,
                 bounded: bool = False, ring: CounterRing | None = None) -> None:
        """``features``: stage A's memberships (read only: which sync features are popular). ``bounded``: the
        input ends (a drain comes), so boundaries wait for all their frames (``BOUNDED_SETTLE_MINUTES``).
        ``ring``: the one the frames go to, shared with the pooled evidence (default: a ring of its own)."""
        self.config = config.sync
        self.features = features
        self.scales = self.config.scales()  # shortest window first
        self.step = self.scales[0].step_minutes  # the boundary clock: every scale's step is a multiple
        self.settle = settle_minutes(config, bounded)
        width = ring_minutes(config, bounded)
        self.ring = ring if ring is not None else CounterRing(width)
        if self.ring.width < width:
            raise ValueError(f"the timing evidence needs a ring of {width} minutes, not {self.ring.width}")
        self.ring.holds[READER] = -1  # every slot is needed until the first boundary's eviction
        self.newest = -1  # newest frame minute seen
        self.next_boundary = -1  # -1: no frame yet
        self.member_of: dict[str, str] = {}  # account -> the sync feature it was last grouped into
        self.totals = SyncTotals()

    # --- input ----------------------------------------------------------------------------------

    def handle(self, updates: AccountUpdates) -> list[ObservationBatch]:
        """Apply one message's frames; observations of the boundaries that fell due."""
        if not updates.frame_minute:
            return []
        minutes = np.asarray(updates.frame_minute, np.int64)
        values, calls_only = frame_values(updates)
        owner = np.asarray(updates.frame_account, np.int64)
        keep = values[:, 0] > 0  # the sender leaves out frames without calls (messages.account_updates) anyway
        minutes, values, owner = minutes[keep], values[keep], owner[keep]
        names = np.asarray(updates.account, dtype=object)
        out: list[ObservationBatch] = []
        order = np.argsort(minutes, kind="stable")
        bounds = np.flatnonzero(np.diff(minutes[order])) + 1
        for rows in np.split(order, bounds) if len(order) else []:
            minute = int(minutes[rows[0]])
            out += self._advance(minute)
            self.ring.put_many(self.ring.slots_of(names[owner[rows]].tolist()), minutes[rows], values[rows], calls_only)
            self.newest = max(self.newest, minute)
        return out

    def flush(self) -> list[ObservationBatch]:
        """Evaluate every boundary up to the first one after the newest minute (the end of bounded input)."""
        if self.newest < 0:
            return []
        return self._advance((self.newest // self.step + 1) * self.step + self.settle)

    # --- boundaries -----------------------------------------------------------------------------

    def _advance(self, minute: int) -> list[ObservationBatch]:
        """Evaluate the boundaries due once a frame of ``minute`` is in (before it is written)."""
        cfg = self.config
        step = self.step
        if self.next_boundary < 0:
            self.next_boundary = (minute // step + 1) * step
        out = []
        while self.next_boundary + self.settle <= minute:
            boundary = self.next_boundary
            if boundary - cfg.window_minutes > self.newest:  # nothing since: skip to the first window holding it
                self.next_boundary = max(boundary + step, (minute // step + 1) * step)
                continue
            batch = self._evaluate(boundary)
            if batch is not None:
                out.append(batch)
            self.next_boundary = boundary + step
            self.ring.evict(self.next_boundary - cfg.window_minutes - cfg.repeat_minutes, READER, forget=True)
        return out

    def _evaluate(self, boundary: int) -> ObservationBatch | None:
        started = time.perf_counter()
        t = self.totals
        t.boundaries += 1
        t.eligible = 0
        groups: list[tuple[list[str], Group, int]] = []
        for cfg in self.scales:
            if boundary % cfg.step_minutes:
                continue
            span = cfg.repeat_minutes + cfg.window_minutes
            # A fleet that began inside the window is compared over the minutes known of it (sync._standardise)
            # once they are ``known_minutes``, not only once a whole window has passed.
            slots = self.ring.active(boundary - cfg.window_minutes, known_by=boundary - cfg.known_minutes)
            found = find_groups(self.ring.window(slots, boundary - span, span), cfg)
            st = found.stats
            t.eligible = max(t.eligible, st.eligible)
            t.candidates += st.candidates
            t.edges += st.edges
            t.periodic += st.periodic
            t.repeating += st.repeating
            t.stepped += st.stepped
            t.widely_followed += st.widely_followed
            groups += [([self.ring.names[s] for s in slots[g.rows].tolist()], g, cfg.window_minutes)
                       for g in found.groups]
        batch = self._observations(boundary, groups)
        t.last_s = time.perf_counter() - started
        t.seconds += t.last_s
        return batch

    def _feature_for(self, boundary: int, members: Sequence[str]) -> str | None:
        """The sync feature a group joins (None: it continues a popular one)."""
        held = Counter(f for f in (self.member_of.get(a) for a in members) if f is not None)
        if held:
            feature = min(held, key=lambda f: (-held[f], f))
            state = self.features.get(feature)
            return None if state is not None and "pop" in state else feature
        return PREFIX + stable_id(f"{boundary}:{min(members)}", size=4)

    def _observations(self, boundary: int, groups: list[tuple[list[str], Group, int]]) -> ObservationBatch | None:
        """One batch of the boundary's groups (shortest window first): an account a longer window grouped into
        the same feature too is sent once, with the longer window's sample."""
        samples: dict[tuple[str, str], int] = {}  # (feature, account) -> sample
        for members, group, window in groups:
            feature = self._feature_for(boundary, members)
            if feature is None:
                self.totals.popular_groups += 1
                continue
            self.totals.groups += 1
            self.totals.grouped += len(members)
            for account, r, n in zip(members, group.r.tolist(), group.active.tolist(), strict=True):
                samples[feature, account] = pack_sample(r, n, window)
            self.member_of.update(dict.fromkeys(members, feature))
        if not samples:
            return None
        features = list(dict.fromkeys(feature for feature, _ in samples))
        index = {feature: i for i, feature in enumerate(features)}
        n = len(samples)
        return ObservationBatch("sync", boundary, features, [a for _, a in samples], [index[f] for f, _ in samples],
                                list(range(n)), [boundary * MINUTE_MS] * n, list(samples.values()))

    # --- checkpoint -----------------------------------------------------------------------------

    def clock(self) -> list[int]:
        return [self.newest, self.next_boundary]

    def restore(self, clock: Sequence[int] | None) -> None:
        """The clock back; ``member_of`` is a plain dict its owner restores, the ring the pooled evidence."""
        if clock:
            self.newest, self.next_boundary = int(clock[0]), int(clock[1])

    def as_dict(self) -> dict[str, object]:
        t = self.totals
        return {"sync_boundaries": t.boundaries, "sync_eligible": t.eligible, "sync_candidates": t.candidates,
                "sync_edges": t.edges, "sync_groups": t.groups, "sync_grouped": t.grouped,
                "sync_popular_groups": t.popular_groups, "sync_periodic": t.periodic,
                "sync_repeating": t.repeating, "sync_stepped": t.stepped, "sync_widely_followed": t.widely_followed,
                "sync_s": round(t.seconds, 3), "sync_last_s": round(t.last_s, 3),
                "sync_accounts": int((self.ring.first >= 0).sum())}
