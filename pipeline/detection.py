"""Detector: decoded events in, signature rows and alerts out. No I/O, no Faust.

One instance per worker process holds the account registry, the frame state and
the alert rule state. ``process`` is called with each decoded batch in order;
``force_close`` ends bounded input (the watermark jumps to +infinity).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.alerting.account_rules import AlertRows, ScoreThresholdRule
from pipeline.decode.derived import derived_kernel_columns
from pipeline.decode.json_events import DecodedBatch
from pipeline.kernels import layout as L
from pipeline.scoring import Scores, ScoringConfig, load_scoring_config, score_frames
from pipeline.settings import Settings
from pipeline.state.accounts import AccountRegistry
from pipeline.state.frames import ClosedFrames, FrameStore

# Frame counters stored in signatures_1m as they are.
STORED_COUNTERS = (
    "calls", "prompt_tokens", "completion_tokens", "reasoning_tokens", "reasoning_calls", "logprob_calls",
    "deep_logprob_calls", "logit_bias_calls", "multi_n_calls", "error_calls", "rate_limited_calls", "anon_calls",
    "hosting_calls", "temp_zero_calls", "near_dup_calls", "stream_calls",
)
_COUNTER_INDEX = {name: i for i, name in enumerate(L.COUNTER_NAMES)}


@dataclass(frozen=True)
class DetectionOutput:
    signatures: dict[str, object]  # signatures_1m columns
    alerts: AlertRows
    late_events: int
    scores: Scores

    @property
    def signature_rows(self) -> int:
        return len(self.signatures["account_id"])  # type: ignore[arg-type]


def _frame_cv(frames: ClosedFrames) -> np.ndarray:
    n = frames.counters[:, L.GAP_COUNT].astype(np.float64)
    safe = np.maximum(n, 1.0)
    mean = frames.floats[:, L.GAP_SUM] / safe
    var = np.maximum(frames.floats[:, L.GAP_SQ] / safe - mean * mean, 0.0)
    return np.where((n >= 2) & (mean > 0), np.sqrt(var) / np.where(mean > 0, mean, 1.0), 0.0)


def _frame_temp_std(frames: ClosedFrames) -> np.ndarray:
    n = np.maximum(frames.counters[:, L.TEMP_CALLS].astype(np.float64), 1.0)
    mean = frames.floats[:, L.TEMP_SUM] / n
    return np.sqrt(np.maximum(frames.floats[:, L.TEMP_SQ] / n - mean * mean, 0.0))


class Detector:
    def __init__(self, settings: Settings, n_partitions: int, config: ScoringConfig | None = None) -> None:
        self.config = config or load_scoring_config(settings.scoring_config)
        self.accounts = AccountRegistry()
        self.frames = FrameStore(
            n_partitions=n_partitions,
            allowed_lateness_ms=settings.allowed_lateness_ms,
            max_accounts=settings.max_accounts,
        )
        policy = self.config.alert
        threshold = settings.alert_score_threshold if settings.alert_score_threshold is not None else policy.threshold
        self.rule = ScoreThresholdRule(threshold=threshold, critical_at=policy.critical_at,
                                       renotify_minutes=policy.renotify_minutes)
        self.max_score: dict[str, float] = {}

    def process(self, batch: DecodedBatch, *, force_close: bool = False) -> DetectionOutput:
        columns = dict(batch.kernel)
        columns.update(derived_kernel_columns(batch.raw))  # type: ignore[arg-type]
        columns["slot"] = self.accounts.slots_for(batch.account_ids)
        self.frames.ensure_slots(len(self.accounts))
        if len(batch):
            closed_early, late = self.frames.ingest(columns)
        else:
            closed_early, late = ClosedFrames.concat([]), 0
        closed = ClosedFrames.concat([closed_early, self.frames.close_frames(force=force_close)])
        return self._outputs(closed, late)

    def _outputs(self, closed: ClosedFrames, late: int) -> DetectionOutput:
        frames = closed.take(np.lexsort((closed.minute, closed.slot)))  # per account in minute order
        scores = score_frames(frames, self.config)
        accounts = self.accounts.names_of(frames.slot)
        for account, score in zip(accounts, scores.score.tolist(), strict=True):
            if score > self.max_score.get(account, -1.0):
                self.max_score[account] = score
        sig: dict[str, object] = {"account_id": accounts, "window_start": frames.minute * 60}
        for name in STORED_COUNTERS:
            sig[name] = frames.counters[:, _COUNTER_INDEX[name]]
        for d, name in enumerate(L.DISTINCT_NAMES):
            sig[name] = frames.distinct[:, d]
        sig["gap_cv"] = _frame_cv(frames).astype(np.float32)
        sig["temp_std"] = _frame_temp_std(frames).astype(np.float32)
        sig["calls_5m"] = frames.windows[:, L.W5, L.CALLS]
        sig["calls_1h"] = frames.windows[:, L.W60, L.CALLS]
        sig["calls_24h"] = frames.windows[:, L.W1440, L.CALLS]
        sig["active_minutes_1h"] = frames.windows[:, L.W60, L.WQ_ACTIVE]
        sig["score"] = scores.score
        sig["top_signals"] = scores.top_signals
        sig["signal_names"] = [scores.names] * len(frames)
        sig["signal_points"] = [row for row in np.round(scores.contributions, 2).tolist()]
        alerts = self.rule.evaluate(accounts, frames.minute, scores)
        return DetectionOutput(sig, alerts, late, scores)
