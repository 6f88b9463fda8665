"""The alert outbox: ``alert_notifications`` rows, one per (alert transition, notifier), with delivery state.

``Outbox.add(transitions)`` (the detect step and the linking sink, after the batch's other ClickHouse
writes and before the checkpoint) writes ``pending`` rows in one small INSERT (run it in a worker
thread) and hands them to ``delivery.py``. Ids are derived from the transition, so a re-add after a
crash is skipped, and a re-added row (version 0) never overrides a later state. Thread-safe: the
listener must accept calls from any thread. docs/alerting.md, "Notifiers".
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from clickhouse_connect.driver.client import Client

from pipeline.alerting.notifiers.base import Notification
from pipeline.alerting.transitions import FIRING, RESOLVED, AlertTransition, State
from pipeline.hashing import stable_id
from pipeline.sinks.batch_outputs import content_token
from pipeline.sinks.clickhouse import ClickHouseWriter, query_rows
from schemas.tables import ALERT_NOTIFICATIONS

log = logging.getLogger(__name__)

TABLE = ALERT_NOTIFICATIONS.name
PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"


@dataclass(frozen=True)
class OutboxRow:
    """One notification and its delivery state (a row of alert_notifications)."""

    notification: Notification
    notifier: str
    delivery: str = PENDING
    attempts: int = 0
    last_error: str = ""
    next_attempt_ms: int = 0
    created_ms: int = 0
    updated_ms: int = 0

    @property
    def notification_id(self) -> str:
        return self.notification.notification_id

    @property
    def transition(self) -> AlertTransition:
        return self.notification.transition

    def with_state(self, delivery: str, *, now_ms: int, error: str = "", next_attempt_ms: int = 0,
                   attempted: bool = True) -> OutboxRow:
        return replace(self, delivery=delivery, attempts=self.attempts + int(attempted), last_error=error,
                       next_attempt_ms=next_attempt_ms, updated_ms=now_ms)


def notification_id(t: AlertTransition, notifier: str) -> str:
    """Stable id of one transition for one notifier (the same transition re-added gets the same id)."""
    return stable_id(t.alert_key, t.state, t.starts_at_ms, notifier, size=16)


Listener = Callable[[Sequence[OutboxRow]], None]


class Outbox:
    """Reads and writes ``alert_notifications`` for the configured notifiers (by name)."""

    def __init__(self, writer: ClickHouseWriter, client: Client, database: str, notifiers: Sequence[str], *,
                 clock_ms: Callable[[], int] = lambda: int(time.time() * 1000)) -> None:
        self.writer = writer
        self.client = client
        self.table = ALERT_NOTIFICATIONS.qualified(database)
        self.notifiers = tuple(notifiers)
        self.clock_ms = clock_ms
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()  # one add at a time: the "already stored?" check then the insert

    def listen(self, listener: Listener) -> None:
        """Call ``listener(rows)`` with the rows each ``add`` stored (from the thread that called add)."""
        self._listeners.append(listener)

    def add(self, transitions: Sequence[AlertTransition]) -> int:
        """Store one pending row per (transition, notifier) not stored before; returns how many were new.

        Never waits for a receiver. Raises what ClickHouseWriter.write and query_rows raise
        (ClickHouseUnavailable: retry the same call).
        """
        if not transitions or not self.notifiers:
            return 0
        now = self.clock_ms()
        rows: dict[str, OutboxRow] = {}
        for t in transitions:
            for notifier in self.notifiers:
                nid = notification_id(t, notifier)
                rows[nid] = OutboxRow(Notification(nid, t, raised_at_ms=now), notifier, next_attempt_ms=now,
                                      created_ms=now, updated_ms=now)
        with self._lock:
            stored = self._stored_ids(list(rows))
            new = [r for nid, r in rows.items() if nid not in stored]
            if new:
                ids = [r.notification_id for r in new]
                self.writer.write(TABLE, _columns(new, version=0),
                                  dedup_token=content_token("notify", ids, np.zeros(0, np.int64)))
        if new:
            for listener in self._listeners:
                listener(new)
        return len(new)

    def update(self, rows: Sequence[OutboxRow]) -> None:
        """Store the rows' new delivery state (a newer version of each)."""
        if rows:
            version = time.time_ns() // 1000
            self.writer.write(TABLE, _columns(rows, version=version))

    def pending(self, notifier: str) -> list[OutboxRow]:
        """Every notification of ``notifier`` not yet delivered nor failed, oldest first."""
        return self._select(f"notifier = {{notifier:String}} AND delivery = '{PENDING}'", notifier,
                            order="created_at, starts_at, alert_state = 'resolved'")

    def firing(self, notifier: str) -> list[OutboxRow]:
        """The alerts whose latest transition for ``notifier`` is a delivered firing (they need re-sending)."""
        latest = (
            f"SELECT *, row_number() OVER (PARTITION BY alert_key ORDER BY starts_at DESC, "
            f"alert_state = '{RESOLVED}' DESC) AS latest FROM {self.table} FINAL "
            f"WHERE notifier = {{notifier:String}} AND delivery != '{FAILED}'"
        )
        return self._select(f"latest = 1 AND alert_state = '{FIRING}' AND delivery = '{DELIVERED}'", notifier,
                            source=f"({latest})", order="starts_at")

    def _select(self, where: str, notifier: str, *, order: str, source: str | None = None) -> list[OutboxRow]:
        sql = (
            "SELECT notification_id, notifier, rule, alert_state, labels, annotations, "
            "toUnixTimestamp64Milli(starts_at) AS starts_ms, toUnixTimestamp64Milli(ends_at) AS ends_ms, score, "
            "signals, signal_points, delivery, attempts, last_error, "
            "toUnixTimestamp64Milli(next_attempt_at) AS next_ms, toUnixTimestamp64Milli(created_at) AS created_ms, "
            f"toUnixTimestamp64Milli(updated_at) AS updated_ms FROM {source or self.table + ' FINAL'} "
            f"WHERE {where} ORDER BY {order}"
        )
        return [_row(r) for r in query_rows(self.client, sql, {"notifier": notifier})]

    def _stored_ids(self, ids: list[str]) -> set[str]:
        sql = f"SELECT DISTINCT notification_id FROM {self.table} WHERE notification_id IN {{ids:Array(String)}}"
        return {r["notification_id"] for r in query_rows(self.client, sql, {"ids": ids})}


def _columns(rows: Sequence[OutboxRow], *, version: int) -> dict[str, Any]:
    ts = [r.transition for r in rows]
    return {
        "notification_id": [r.notification_id for r in rows],
        "notifier": [r.notifier for r in rows],
        "alert_key": [t.alert_key for t in ts],
        "rule": [t.rule for t in ts],
        "alert_state": [t.state for t in ts],
        "account_id": [t.labels.get("account_id", "") for t in ts],
        "cluster_id": [t.labels.get("cluster_id", "") for t in ts],
        "labels": [dict(t.labels) for t in ts],
        "annotations": [dict(t.annotations) for t in ts],
        "starts_at": np.array([t.starts_at_ms for t in ts], np.int64),
        "ends_at": np.array([t.ends_at_ms or 0 for t in ts], np.int64),
        "score": np.array([t.score for t in ts], np.float32),
        "signals": [list(t.signals) for t in ts],
        "signal_points": [[float(v) for v in t.signals.values()] for t in ts],
        "delivery": [r.delivery for r in rows],
        "attempts": np.array([r.attempts for r in rows], np.uint32),
        "last_error": [r.last_error for r in rows],
        "next_attempt_at": np.array([r.next_attempt_ms for r in rows], np.int64),
        "created_at": np.array([r.created_ms for r in rows], np.int64),
        "updated_at": np.array([r.updated_ms for r in rows], np.int64),
        "version": np.full(len(rows), version, np.uint64),
    }


def _row(r: dict[str, Any]) -> OutboxRow:
    state: State = "firing" if r["alert_state"] == FIRING else "resolved"
    transition = AlertTransition(
        rule=r["rule"], state=state, labels=dict(r["labels"]), annotations=dict(r["annotations"]),
        starts_at_ms=int(r["starts_ms"]), ends_at_ms=int(r["ends_ms"]) if state == RESOLVED else None,
        score=float(r["score"]), signals=dict(zip(r["signals"], map(float, r["signal_points"]), strict=True)),
    )
    return OutboxRow(Notification(r["notification_id"], transition, int(r["created_ms"])), r["notifier"], r["delivery"],
                     int(r["attempts"]), r["last_error"], int(r["next_ms"]), int(r["created_ms"]),
                     int(r["updated_ms"]))
