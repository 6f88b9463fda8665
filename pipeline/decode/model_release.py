"""Is a call's model newly released? A per-worker map model -> first-seen event time.

A model is new when this worker first saw it at least ``NEW_AFTER_MS`` of event time after
its own first event, for ``NEW_FOR_MS``: no operator list, no release calendar. First seen and
the origin are minimum event times (late events only move them earlier; the origin only over
events at most ``ORIGIN_SLACK_MS`` older than the newest); failed calls do not register a model;
at most ``MAX_MODELS``. Checkpointed with the partition markers, merged by minimum
(``as_json`` / ``merge_json``). Why and how, with its cost: docs/signals.md ("A model pivot").
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import numpy as np

log = logging.getLogger(__name__)

HOUR_MS = 3_600_000
NEW_AFTER_MS = HOUR_MS  # a model first seen this long after the worker's first event is a release
NEW_FOR_MS = 24 * HOUR_MS  # ... and is new for this long after it was first seen
ORIGIN_SLACK_MS = HOUR_MS  # events older than the newest seen minus this do not move the origin
MAX_MODELS = 1024
NO_TIME = np.iinfo(np.int64).max


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


class ModelReleases:
    """Model -> first-seen event time, and the worker's own first event time (its origin)."""

    def __init__(self) -> None:
        self.origin: int | None = None  # the worker's first event time (ms)
        self.newest: int | None = None  # the latest event time seen (ms)
        self.first_seen: dict[str, int] = {}
        self._announced: set[str] = set()

    def observe(self, models: Sequence[str], ts_ms: np.ndarray, status: np.ndarray) -> np.ndarray:
        """Fold a batch into the map, then flag each of its calls whose model is new (bool per event)."""
        n = len(models)
        if n == 0:
            return np.zeros(0, bool)
        ts = np.asarray(ts_ms, np.int64)
        names = list(dict.fromkeys(models))  # distinct, in order of appearance
        code_of = {name: i for i, name in enumerate(names)}
        codes = np.fromiter(map(code_of.__getitem__, models), np.int64, n)
        newest = int(ts.max())
        self.newest = newest if self.newest is None else max(self.newest, newest)
        recent = ts[ts >= self.newest - ORIGIN_SLACK_MS]
        if recent.size:
            low = int(recent.min())
            self.origin = low if self.origin is None else min(self.origin, low)
        served = np.asarray(status) < 400
        first = np.full(len(names), NO_TIME, np.int64)
        np.minimum.at(first, codes[served], ts[served])
        for name, t in zip(names, first.tolist(), strict=True):
            if t != NO_TIME:
                self._seen(name, t)
        since = np.array([self.new_since(name) for name in names], np.int64)
        for name in np.array(names, object)[since != NO_TIME].tolist():
            self._announce(name)
        at = since[codes]
        return (ts >= at) & (ts - at < NEW_FOR_MS)

    def _seen(self, model: str, ts_ms: int) -> None:
        known = self.first_seen.get(model)
        if known is None:
            if len(self.first_seen) < MAX_MODELS:
                self.first_seen[model] = ts_ms
        elif ts_ms < known:
            self.first_seen[model] = ts_ms

    def new_since(self, model: str) -> int:
        """The model's first-seen time when it is a release (first seen ``NEW_AFTER_MS`` or more after
        the origin), else NO_TIME. A call on it is new while it is under ``NEW_FOR_MS`` later."""
        first = self.first_seen.get(model)
        if first is None or self.origin is None or first < self.origin + NEW_AFTER_MS:
            return NO_TIME
        return first

    def _announce(self, model: str) -> None:
        if model not in self._announced and self.origin is not None:
            self._announced.add(model)
            first = self.first_seen[model]
            log.info("model %r is new: first seen at %s, %.1f h after this worker's first event (%s)", model,
                     _utc(first), (first - self.origin) / HOUR_MS, _utc(self.origin))

    # --- checkpoint (pipeline/state: the partition markers) ------------------------------
    def as_json(self) -> dict[str, object]:
        return {"origin": self.origin, "newest": self.newest, "first_seen": dict(self.first_seen)}

    def merge_json(self, state: Mapping[str, object]) -> None:
        """Merge a checkpointed map (``as_json``) into this one: every time is the minimum of both,
        the newest event time the maximum."""
        origin, newest = state.get("origin"), state.get("newest")
        if origin is not None:
            self.origin = int(origin) if self.origin is None else min(self.origin, int(origin))  # type: ignore[call-overload]
        if newest is not None:
            self.newest = int(newest) if self.newest is None else max(self.newest, int(newest))  # type: ignore[call-overload]
        seen = state.get("first_seen") or {}
        for name, t in seen.items():  # type: ignore[attr-defined]
            self._seen(str(name), int(t))
