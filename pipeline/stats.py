"""Worker counters: what /stats shows and what the demo's progress line reads."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field


@dataclass
class PipelineStats:
    started_at: float = field(default_factory=time.time)
    batches: int = 0
    events_in: int = 0  # messages read from the events topic
    events_valid: int = 0
    events_rejected: int = 0
    rejected_by_reason: Counter[str] = field(default_factory=Counter)
    events_duplicate: int = 0  # valid events dropped as resent copies (pipeline/state/dedup.py)
    late_events: int = 0
    signature_rows: int = 0
    alerts: int = 0
    alerts_by_rule: Counter[tuple[str, str]] = field(default_factory=Counter)  # (rule, severity) -> alerts
    # (rule, reason) -> firings recorded but not paged: reason allowlist | false_positive
    alerts_suppressed: Counter[tuple[str, str]] = field(default_factory=Counter)
    accounts: int = 0
    watermark_ms: int = 0
    last_batch_events: int = 0
    last_batch_seconds: float = 0.0
    last_insert_seconds: float = 0.0
    clickhouse_retries: int = 0
    clickhouse_available: bool = True
    batches_committed: int = 0  # batches whose state is checkpointed and offsets committed
    last_commit_at: float = 0.0  # wall clock of the last offset commit (0: none yet)
    checkpoint_retries: int = 0
    drained: bool = False

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["rejected_by_reason"] = dict(self.rejected_by_reason)
        by_rule: dict[str, dict[str, int]] = {}
        for (rule, severity), n in self.alerts_by_rule.items():
            by_rule.setdefault(rule, {})[severity] = n
        d["alerts_by_rule"] = by_rule
        suppressed: dict[str, dict[str, int]] = {}
        for (rule, reason), n in self.alerts_suppressed.items():
            suppressed.setdefault(rule, {})[reason] = n
        d["alerts_suppressed"] = suppressed
        d["uptime_s"] = round(time.time() - self.started_at, 3)
        return d
