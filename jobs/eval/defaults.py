"""Defaults of ``distillwatch eval`` (no heavy imports: the CLI reads them at start).

About 3.2 million events over six hours of event time, starting when Europe and Asia
are at work and America is asleep, so every diurnal shape is somewhere on its curve.
"""

from __future__ import annotations

from typing import Final

OUT_DIR: Final = "reports/eval"
RATE_EPS: Final = 150.0
DURATION_S: Final = 6 * 3600.0
START: Final = "2026-02-12T06:00:00Z"
MIX_SCALE: Final = 2.0  # 918 accounts, 610 benign: one false positive is 0.16% of them
JITTER_FRACTION: Final = 0.01
JITTER_MAX_S: Final = 300.0  # beyond the default allowed lateness (120 s): some events arrive too late
SEED: Final = 7
