"""Alert lifecycle in event time: pending → firing → resolved, per (rule, subject), over minute rows.

``step_lifecycle`` runs it (its kernel in ``pipeline.kernels.lifecycle``); ``reference_lifecycle`` is
the plain-Python specification. A row is one subject's frame minute with the rule's condition true
or false. State per subject is three integers (``NONE`` = absent): pending_since, last_true,
firing_since (minutes); ``SubjectState`` is its JSON form, checkpointed with the account
(``Detector``). The rules: docs/alerting.md, "Lifecycle".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.kernels.layout import FRAME_MS

NONE = np.int64(-(2**62))  # no pending / not firing / never true
MINUTE_MS = FRAME_MS  # rules step once per closed frame: their minutes are frames


@dataclass(frozen=True)
class LifecycleResult:
    """What one pass over rows changed."""

    fired: np.ndarray  # bool per row: the alert fired at this row
    resolved_group: np.ndarray  # int64: group of each resolution, in the order they happened
    resolved_minute: np.ndarray  # int64: its event-time minute (ends_at = minute * 60 s)
    resolved_before_row: np.ndarray  # int64: the row it was noticed before (n: at the end, by ``now``)
    pending: np.ndarray  # final state per group (int64, NONE = absent)
    last_true: np.ndarray
    firing: np.ndarray


def step_lifecycle(group: np.ndarray, minute: np.ndarray, cond: np.ndarray, *, for_minutes: int,
                   resolve_minutes: int, max_gap: int = 0, pending: np.ndarray, last_true: np.ndarray,
                   firing: np.ndarray, now_minute: int | None = None) -> LifecycleResult:
    """Run rows (``group`` ids 0..G-1, each group's rows in minute order) through the lifecycle.

    ``pending``/``last_true``/``firing`` are the G groups' states before the rows (copied, not
    changed). ``max_gap``: minutes without a true frame (false frames or none) a pending run survives;
    0: ``for`` needs a true frame every minute. ``now_minute``: the event-time minute every frame
    before which has been seen (the watermark); firing alerts quiet until then resolve. Pure: arrays
    in, arrays out.
    """
    # Imported here: the linking process uses this module's states but never the kernel (no Numba there).
    from pipeline.kernels.lifecycle import step_rows

    n = len(group)
    pend, last, fire = (np.array(a, np.int64, copy=True) for a in (pending, last_true, firing))
    fired = np.zeros(n, np.bool_)
    size = n + len(fire)
    res_group, res_minute, res_row = (np.empty(size, np.int64) for _ in range(3))
    now = int(NONE) if now_minute is None else int(now_minute)
    k = step_rows(np.ascontiguousarray(group, np.int64), np.ascontiguousarray(minute, np.int64),
                  np.ascontiguousarray(cond, np.bool_), int(for_minutes), int(max_gap), int(resolve_minutes), pend,
                  last, fire, now, fired, res_group, res_minute, res_row)
    return LifecycleResult(fired, res_group[:k], res_minute[:k], res_row[:k], pend, last, fire)


def reference_lifecycle(rows: list[tuple[object, int, bool]], for_minutes: int, resolve_minutes: int,
                        now_minute: int | None = None,
                        max_gap: int = 0) -> tuple[list[tuple[object, int]], list[tuple[object, int]]]:
    """Plain-Python specification: ``rows`` of (subject, minute, condition) → (firings, resolutions)
    as (subject, event-time minute at which it fired (frame end) / resolved), in order."""
    state: dict[object, dict[str, int | None]] = {}
    fires: list[tuple[object, int]] = []
    resolves: list[tuple[object, int]] = []
    for subject, m, ok in rows:
        s = state.setdefault(subject, {"pending": None, "last": None, "firing": None})
        if s["firing"] is not None and m >= s["last"] + 1 + resolve_minutes:  # type: ignore[operator]
            resolves.append((subject, s["last"] + 1 + resolve_minutes))  # type: ignore[operator]
            s["firing"] = None
        if ok:
            if s["pending"] is None or s["last"] is None or m - s["last"] - 1 > max_gap:
                s["pending"] = m
            s["last"] = m
            if s["firing"] is None and m - s["pending"] >= for_minutes:  # type: ignore[operator]
                s["firing"] = m
                fires.append((subject, m + 1))
        elif s["last"] is None or m - s["last"] > max_gap:
            s["pending"] = None
    if now_minute is not None:
        for subject, s in state.items():
            if s["firing"] is not None and now_minute >= s["last"] + 1 + resolve_minutes:  # type: ignore[operator]
                resolves.append((subject, s["last"] + 1 + resolve_minutes))  # type: ignore[operator]
    return fires, resolves


@dataclass
class SubjectState:
    """One (rule, subject)'s lifecycle plus, while firing, what its resolution must repeat.

    JSON form (``to_json``/``from_json``): ``{"p": pending, "t": last_true, "f": firing_since,
    "a": alert}`` with minutes, absent keys meaning NONE; ``alert`` is the firing alert's labels
    and facts (``engine.FiringAlert.to_json``), absent while not firing.
    """

    pending: int = int(NONE)
    last_true: int = int(NONE)
    firing: int = int(NONE)
    alert: dict[str, object] | None = None

    @property
    def idle(self) -> bool:
        """Nothing to remember: neither pending nor firing."""
        return self.pending == NONE and self.firing == NONE

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for key, value in (("p", self.pending), ("t", self.last_true), ("f", self.firing)):
            if value != NONE:
                out[key] = int(value)
        if self.alert is not None:
            out["a"] = self.alert
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SubjectState:
        get = lambda k: int(data[k]) if k in data else int(NONE)  # noqa: E731
        alert = data.get("a")
        return cls(get("p"), get("t"), get("f"), dict(alert) if isinstance(alert, dict) else None)
