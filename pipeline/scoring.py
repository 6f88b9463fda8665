"""Extraction score 0–100 of closed account-minute frames, with the signals behind it.

Vectorised NumPy over a batch of frames. Each signal is a strength in [0, 1]
(a linear ramp between a "normal" and a "clearly abnormal" value, gated by enough
calls to mean something); the score is the weighted sum, capped at 100, so an
alert can say which signals contributed and by how much.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.kernels.layout import (
    CALLS,
    COMPLETION_TOKENS,
    DEEP_LOGPROB_CALLS,
    HASHED_CALLS,
    LOGIT_BIAS_CALLS,
    LOGPROB_CALLS,
    MULTI_N_CALLS,
    PROMPT_TOKENS,
    REASONING_CALLS,
    REASONING_TOKENS,
)
from pipeline.state.frames import ClosedFrames

# Signal name -> weight (points at full strength). No single signal reaches the
# alert threshold alone; extraction shows as several at once.
WEIGHTS: dict[str, float] = {
    "reasoning_elicitation": 40.0,
    "distribution_probing": 45.0,
    "output_harvest": 20.0,
    "ip_fanout": 20.0,
    "reasoning_volume": 15.0,
    "prompt_diversity": 15.0,
    "logprob_use": 10.0,
    "call_volume": 5.0,
}
TOP_SIGNALS = 3
MIN_CONTRIBUTION = 5.0  # points; smaller contributions are not worth naming


def _ramp(x: np.ndarray, low: float, high: float) -> np.ndarray:
    return np.clip((x - low) / (high - low), 0.0, 1.0)


@dataclass(frozen=True)
class Scores:
    score: np.ndarray  # float32 [rows], 0..100
    contributions: np.ndarray  # float32 [rows, len(WEIGHTS)], points per signal
    top_signals: list[list[str]]


def signal_strengths(frames: ClosedFrames) -> dict[str, np.ndarray]:
    c = frames.counters.astype(np.float64)
    calls = c[:, CALLS]
    safe_calls = np.maximum(calls, 1.0)
    enough = _ramp(calls, 3, 15)  # a handful of calls says little
    hashed = c[:, HASHED_CALLS]
    return {
        "reasoning_elicitation": _ramp(c[:, REASONING_CALLS] / safe_calls, 0.2, 0.6) * enough,
        # Many alternatives per token, biased logits, several samples per prompt:
        # reading out the output distribution rather than using the answer.
        "distribution_probing": np.maximum(
            _ramp(c[:, DEEP_LOGPROB_CALLS] / safe_calls, 0.2, 0.7),
            0.5 * _ramp(c[:, MULTI_N_CALLS] / safe_calls, 0.3, 0.8),
        ) * enough,
        "output_harvest": _ramp(c[:, COMPLETION_TOKENS] / np.maximum(c[:, PROMPT_TOKENS], 1.0), 1.5, 5.0)
        * enough,
        "ip_fanout": _ramp(frames.distinct[:, 1].astype(np.float64), 3, 12),
        "reasoning_volume": _ramp(c[:, REASONING_TOKENS] / safe_calls, 500, 3000) * enough,
        "prompt_diversity": _ramp(frames.distinct[:, 0] / np.maximum(hashed, 1.0), 0.6, 0.95)
        * _ramp(hashed, 10, 40),
        "logprob_use": np.maximum(
            _ramp(c[:, LOGPROB_CALLS] / safe_calls, 0.3, 0.9),
            _ramp(c[:, LOGIT_BIAS_CALLS] / safe_calls, 0.05, 0.3),
        ) * enough,
        "call_volume": _ramp(calls, 30, 300),
    }


def score_frames(frames: ClosedFrames) -> Scores:
    strengths = signal_strengths(frames)
    names = list(WEIGHTS)
    if len(frames):
        contributions = np.stack([strengths[n] * WEIGHTS[n] for n in names], axis=1)
    else:
        contributions = np.zeros((0, len(names)))
    score = np.minimum(contributions.sum(axis=1), 100.0).astype(np.float32)
    order = np.argsort(-contributions, axis=1, kind="stable")[:, :TOP_SIGNALS]
    top = [
        [names[j] for j in order[i] if contributions[i, j] >= MIN_CONTRIBUTION]
        for i in range(len(frames))
    ]
    return Scores(score, contributions.astype(np.float32), top)
