"""Features: interpretable numbers per closed frame, computed from the account's rolled windows.

Vectorised NumPy over a batch of closed frames. Shares are ratios of decayed sums,
so they weight recent minutes more (the decay cancels in a ratio). Each feature
is documented in docs/signals.md.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pipeline.kernels import layout as L
from pipeline.state.closed_frames import ClosedFrames

_TAU = np.asarray(L.WINDOW_MINUTES, np.float64)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den > 0)


def _w(frames: ClosedFrames, window: int, q: int) -> np.ndarray:
    return frames.windows[:, window, q].astype(np.float64)


def _share(q: int, den: int = L.CALLS, window: int = L.W60) -> Callable[[ClosedFrames], np.ndarray]:
    return lambda f: _ratio(_w(f, window, q), _w(f, window, den))


def _gap_cv(f: ClosedFrames) -> np.ndarray:
    n = _w(f, L.W60, L.GAP_COUNT)
    mean = _ratio(_w(f, L.W60, L.WQ_FLOATS + L.GAP_SUM), n)
    var = np.maximum(_ratio(_w(f, L.W60, L.WQ_FLOATS + L.GAP_SQ), n) - mean * mean, 0.0)
    # Too few gaps say nothing about regularity: report "irregular" (CV 1, Poisson-like).
    return np.where((n >= 10) & (mean > 0), np.sqrt(var) / np.where(mean > 0, mean, 1.0), 1.0)


def _temp_std(f: ClosedFrames) -> np.ndarray:
    n = _w(f, L.W60, L.TEMP_CALLS)
    mean = _ratio(_w(f, L.W60, L.WQ_FLOATS + L.TEMP_SUM), n)
    return np.sqrt(np.maximum(_ratio(_w(f, L.W60, L.WQ_FLOATS + L.TEMP_SQ), n) - mean * mean, 0.0))


def _topic_entropy(f: ClosedFrames) -> np.ndarray:
    counts = f.windows[:, L.W60, L.TOPIC_BUCKET0:L.TOPIC_BUCKET0 + L.TOPIC_BUCKETS].astype(np.float64)
    total = counts.sum(axis=1, keepdims=True)
    p = np.divide(counts, total, out=np.zeros_like(counts), where=total > 0)
    return -(p * np.log2(np.where(p > 0, p, 1.0))).sum(axis=1)


def _active_share(window: int) -> Callable[[ClosedFrames], np.ndarray]:
    """Decayed active minutes over the most they could be for the account's active minutes of the day.

    An account with k active minutes (W1440, about a count at that time scale) reaches the most
    when they are the k latest minutes: sum_{j<k} exp(-j / tau) = (1 - exp(-k / tau)) / (1 - exp(-1 / tau)).
    So an account calling every minute since its first call has a share of 1 from its first
    minute, instead of ramping up over the window's time scale as it would against an account
    active for ever (the same denominator once k is a few times tau).
    """
    tau = _TAU[window]

    def share(f: ClosedFrames) -> np.ndarray:
        k = np.maximum(_w(f, L.W1440, L.WQ_ACTIVE), 1.0)
        most = -np.expm1(-k / tau) / -np.expm1(-1.0 / tau)
        return np.minimum(_w(f, window, L.WQ_ACTIVE) / most, 1.0)

    return share


def _per_active_minute(q: int) -> Callable[[ClosedFrames], np.ndarray]:
    return lambda f: _ratio(_w(f, L.W60, q), _w(f, L.W60, L.WQ_ACTIVE))


def _volume_ratio(f: ClosedFrames) -> np.ndarray:
    # Calls per active minute lately vs over the day: intensity against the account's
    # own baseline (a new account is its own baseline, ratio 1).
    recent = _ratio(_w(f, L.W5, L.CALLS), _w(f, L.W5, L.WQ_ACTIVE))
    baseline = _ratio(_w(f, L.W1440, L.CALLS), _w(f, L.W1440, L.WQ_ACTIVE))
    return recent / np.maximum(baseline, 1.0)


def _taken(f: ClosedFrames) -> np.ndarray:
    """Answer plus reasoning tokens in the hour: what the calls took."""
    return _w(f, L.W60, L.COMPLETION_TOKENS) + _w(f, L.W60, L.REASONING_TOKENS)


def _take_ratio(f: ClosedFrames) -> np.ndarray:
    # What a call takes per token it gives: a sweep takes more than it sends, a summarisation or
    # classification job far less.
    return _ratio(_taken(f), _w(f, L.W60, L.PROMPT_TOKENS))


FEATURES: dict[str, Callable[[ClosedFrames], np.ndarray]] = {
    "calls_1h": lambda f: _w(f, L.W60, L.CALLS),
    "taken_1h": _taken,
    "reasoning_share": _share(L.REASONING_CALLS),
    "reasoning_tokens_per_call": _share(L.REASONING_TOKENS),
    "output_input_ratio": _share(L.COMPLETION_TOKENS, L.PROMPT_TOKENS),
    "completion_per_call": _share(L.COMPLETION_TOKENS),
    "deep_logprob_share": _share(L.DEEP_LOGPROB_CALLS),
    "logprob_share": _share(L.LOGPROB_CALLS),
    "logit_bias_share": _share(L.LOGIT_BIAS_CALLS),
    "wide_bias_share": _share(L.WIDE_BIAS_CALLS),
    "tiny_output_share": _share(L.TINY_OUTPUT_CALLS),
    "client_mismatch_share": _share(L.CLIENT_MISMATCH_CALLS),
    "new_model_share": _share(L.NEW_MODEL_CALLS, window=L.W5),
    "take_ratio": _take_ratio,
    "multi_n_share": _share(L.MULTI_N_CALLS),
    "temp_std": _temp_std,
    "temp_zero_share": _share(L.TEMP_ZERO_CALLS, L.TEMP_CALLS),
    "prompt_diversity": _share(L.WQ_DISTINCT + L.D_PROMPTS, L.HASHED_CALLS),
    "near_dup_share": _share(L.NEAR_DUP_CALLS, L.HASHED_CALLS),
    "ips_per_minute": _per_active_minute(L.WQ_DISTINCT + L.D_IPS),
    "uas_per_minute": _per_active_minute(L.WQ_DISTINCT + L.D_UAS),
    "asns_per_minute": _per_active_minute(L.WQ_DISTINCT + L.D_ASNS),
    "anon_share": _share(L.ANON_CALLS),
    "hosting_share": _share(L.HOSTING_CALLS),
    "gap_cv": _gap_cv,
    "active_share_5m": _active_share(L.W5),
    "active_share_1h": _active_share(L.W60),
    "rate_limited_share": _share(L.RATE_LIMITED_CALLS),
    "error_share": _share(L.ERROR_CALLS),
    "topic_entropy": _topic_entropy,
    "volume_ratio": _volume_ratio,
}


def compute_features(frames: ClosedFrames, names: list[str] | None = None) -> dict[str, np.ndarray]:
    return {name: FEATURES[name](frames) for name in (names or FEATURES)}
