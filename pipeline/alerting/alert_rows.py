"""Columns of the ``alerts`` table (schemas/tables.py ALERTS), one entry per alert firing.

Every firing is a row, including monitor-mode firings (``mode`` = monitor) and suppressed ones
(``suppressed_by`` = ``allowlist:<entry id>`` or ``false_positive:<feedback id>``): only the
others page and publish an action.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class AlertRows:
    alert_id: list[str] = field(default_factory=list)
    fired_ms: list[int] = field(default_factory=list)  # event time: end of the frame that fired
    account_id: list[str] = field(default_factory=list)
    rule: list[str] = field(default_factory=list)
    severity: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    signals: list[list[str]] = field(default_factory=list)  # contributing signals, strongest first
    signal_points: list[list[float]] = field(default_factory=list)  # their points, same order
    window_starts: list[int] = field(default_factory=list)  # epoch seconds
    cluster_id: list[str] = field(default_factory=list)  # "" when none known
    mode: list[str] = field(default_factory=list)  # page | monitor
    action: list[str] = field(default_factory=list)
    suppressed_by: list[str] = field(default_factory=list)  # "" when it paged

    def __len__(self) -> int:
        return len(self.alert_id)

    def add(self, *, alert_id: str, fired_ms: int, account_id: str, rule: str, severity: str, score: float,
            signals: list[str], points: list[float], window_start_s: int, cluster_id: str, mode: str,
            action: str, suppressed_by: str) -> None:
        self.alert_id.append(alert_id)
        self.fired_ms.append(int(fired_ms))
        self.account_id.append(account_id)
        self.rule.append(rule)
        self.severity.append(severity)
        self.scores.append(float(score))
        self.signals.append(signals)
        self.signal_points.append(points)
        self.window_starts.append(int(window_start_s))
        self.cluster_id.append(cluster_id)
        self.mode.append(mode)
        self.action.append(action)
        self.suppressed_by.append(suppressed_by)

    @property
    def fired_ts_ms(self) -> np.ndarray:
        return np.array(self.fired_ms, np.int64)

    @property
    def score(self) -> np.ndarray:
        return np.array(self.scores, np.float32)

    @property
    def window_start_s(self) -> np.ndarray:
        return np.array(self.window_starts, np.int64)

    def extend(self, other: AlertRows) -> None:
        for name in self.__dataclass_fields__:
            getattr(self, name).extend(getattr(other, name))

    def columns(self) -> dict[str, object]:
        """Insert columns for ClickHouseWriter.write('alerts', ...)."""
        return {
            "alert_id": self.alert_id,
            "fired_ts": self.fired_ts_ms,
            "account_id": self.account_id,
            "rule": self.rule,
            "severity": self.severity,
            "score": self.score,
            "signals": self.signals,
            "signal_points": self.signal_points,
            "window_start": self.window_start_s,
            "cluster_id": self.cluster_id,
            "mode": self.mode,
            "action": self.action,
            "suppressed_by": self.suppressed_by,
        }
