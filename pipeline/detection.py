"""Detector: decoded events in, signature rows and alerts out. No I/O, no Faust.

One instance per worker process holds the account registry, the frame state and
the alert rule state. ``process`` is called with each decoded batch in order;
``force_close`` ends bounded input (the watermark jumps to +infinity).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.alerting.account_rules import AlertRows, ScoreThresholdRule
from pipeline.decode.json_events import DecodedBatch
from pipeline.kernels.layout import COUNTER_NAMES, N_COUNTERS
from pipeline.scoring import score_frames
from pipeline.settings import Settings
from pipeline.state.accounts import AccountRegistry
from pipeline.state.frames import ClosedFrames, FrameStore

# Counters stored in signatures_1m (hashed_calls is an internal denominator).
SIGNATURE_COUNTERS = tuple(name for name in COUNTER_NAMES if name != "hashed_calls")


@dataclass(frozen=True)
class DetectionOutput:
    signatures: dict[str, object]  # signatures_1m columns
    alerts: AlertRows
    late_events: int

    @property
    def signature_rows(self) -> int:
        return len(self.signatures["account_id"])  # type: ignore[arg-type]


class Detector:
    def __init__(self, settings: Settings, n_partitions: int) -> None:
        self.accounts = AccountRegistry()
        self.frames = FrameStore(
            n_partitions=n_partitions,
            allowed_lateness_ms=settings.allowed_lateness_ms,
            max_accounts=settings.max_accounts,
        )
        self.rule = ScoreThresholdRule(threshold=settings.alert_score_threshold)
        self.max_score: dict[str, float] = {}

    def process(self, batch: DecodedBatch, *, force_close: bool = False) -> DetectionOutput:
        columns = dict(batch.kernel)
        columns["slot"] = self.accounts.slots_for(batch.account_ids)
        self.frames.ensure_slots(len(self.accounts))
        evicted, late = self.frames.ingest(columns) if len(batch) else (ClosedFrames.concat([]), 0)
        closed = ClosedFrames.concat([evicted, self.frames.close_frames(force=force_close)])
        return self._outputs(closed, late)

    def _outputs(self, closed: ClosedFrames, late: int) -> DetectionOutput:
        order = np.lexsort((closed.minute, closed.slot))  # per account in minute order
        frames = ClosedFrames(closed.slot[order], closed.minute[order], closed.counters[order],
                              closed.distinct[order])
        scores = score_frames(frames)
        accounts = self.accounts.names_of(frames.slot)
        for account, score in zip(accounts, scores.score.tolist(), strict=True):
            if score > self.max_score.get(account, -1.0):
                self.max_score[account] = score
        signatures: dict[str, object] = {
            "account_id": accounts,
            "window_start": frames.minute * 60,
        }
        for j, name in enumerate(COUNTER_NAMES[:N_COUNTERS]):
            if name in SIGNATURE_COUNTERS:
                signatures[name] = frames.counters[:, j]
        signatures["distinct_prompts"] = frames.distinct[:, 0]
        signatures["distinct_ips"] = frames.distinct[:, 1]
        signatures["score"] = scores.score
        signatures["top_signals"] = scores.top_signals
        alerts = self.rule.evaluate(accounts, frames.minute, scores.score, scores.top_signals)
        return DetectionOutput(signatures, alerts, late)
