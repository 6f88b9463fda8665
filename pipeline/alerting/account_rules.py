"""Account alert rule ``extraction_score_high``: a frame's score crosses the threshold.

De-duplicated per account: after firing, the rule stays quiet for that account
for ``renotify_minutes`` of event time, so one campaign minute after minute is
one alert per hour, not sixty. Frames must be given in minute order per account
(the detector sorts them). Each alert carries the signals that contributed and
their points.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.scoring import Scores

RULE_SCORE_HIGH = "extraction_score_high"


@dataclass(frozen=True)
class AlertRows:
    alert_id: list[str]
    fired_ts_ms: np.ndarray  # int64, event time: end of the frame that fired
    account_id: list[str]
    rule: list[str]
    severity: list[str]
    score: np.ndarray  # float32
    signals: list[list[str]]  # contributing signals, strongest first
    signal_points: list[list[float]]  # their points, same order
    window_start_s: np.ndarray  # int64

    def __len__(self) -> int:
        return len(self.alert_id)


@dataclass
class ScoreThresholdRule:
    threshold: float
    critical_at: float = 90.0
    renotify_minutes: int = 60
    min_points: float = 1.0  # contributions below this are not listed on an alert
    last_fired_minute: dict[str, int] = field(default_factory=dict)

    def evaluate(self, accounts: list[str], minutes: np.ndarray, scores: Scores) -> AlertRows:
        ids: list[str] = []
        fired: list[int] = []
        acc: list[str] = []
        sev: list[str] = []
        sc: list[float] = []
        sig: list[list[str]] = []
        pts: list[list[float]] = []
        starts: list[int] = []
        for i in np.flatnonzero(scores.score >= self.threshold).tolist():
            account, minute = accounts[i], int(minutes[i])
            last = self.last_fired_minute.get(account)
            if last is not None and minute - last < self.renotify_minutes:
                continue
            self.last_fired_minute[account] = minute
            fired_ms = (minute + 1) * 60_000
            row = scores.contributions[i]
            order = [j for j in np.argsort(-row, kind="stable").tolist() if row[j] >= self.min_points]
            ids.append(f"{RULE_SCORE_HIGH}:{account}:{fired_ms}")
            fired.append(fired_ms)
            acc.append(account)
            sev.append("critical" if scores.score[i] >= self.critical_at else "warning")
            sc.append(float(scores.score[i]))
            sig.append([scores.names[j] for j in order])
            pts.append([round(float(row[j]), 2) for j in order])
            starts.append(minute * 60)
        return AlertRows(ids, np.array(fired, np.int64), acc, [RULE_SCORE_HIGH] * len(ids), sev,
                         np.array(sc, np.float32), sig, pts, np.array(starts, np.int64))
