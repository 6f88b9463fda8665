"""The decoder's output: valid events as columns plus rejects, and per-event derived keys."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.decode.rejects import Rejected
from pipeline.kernels.layout import (
    DEEP_TOP_LOGPROBS,
    FLAG_DEEP_LOGPROBS,
    FLAG_LOGIT_BIAS,
    FLAG_LOGPROBS,
    FLAG_MULTI_N,
    FLAG_REASONING,
    FLAG_STREAM,
)
from schemas.event import ApiCallEvent


@dataclass
class DecodedBatch:
    """Valid events as columns (kernel inputs and raw-table columns) plus rejects."""

    account_ids: list[str]
    kernel: dict[str, np.ndarray]  # part, ts_ms, tokens, prompt_hash, ip_key, status, flags
    raw: dict[str, Sequence[object] | np.ndarray]  # api_calls table columns
    rejects: list[Rejected]

    def __len__(self) -> int:
        return len(self.account_ids)


def event_flags(e: ApiCallEvent) -> int:
    return (
        (FLAG_REASONING if e.elicits_reasoning else 0)
        | (FLAG_LOGPROBS if e.logprobs or (e.top_logprobs or 0) > 0 else 0)
        | (FLAG_LOGIT_BIAS if e.logit_bias_count > 0 else 0)
        | (FLAG_MULTI_N if e.n > 1 else 0)
        | (FLAG_STREAM if e.stream else 0)
        | (FLAG_DEEP_LOGPROBS if (e.top_logprobs or 0) >= DEEP_TOP_LOGPROBS else 0)
    )


def flags_of_columns(elicits: np.ndarray, logprobs: np.ndarray, top_logprobs: np.ndarray,
                     logit_bias_count: np.ndarray, n: np.ndarray, stream: np.ndarray) -> np.ndarray:
    """``event_flags`` for whole columns (top_logprobs -1 means absent)."""
    flags = np.where(elicits != 0, FLAG_REASONING, 0)
    flags |= np.where((logprobs != 0) | (top_logprobs > 0), FLAG_LOGPROBS, 0)
    flags |= np.where(logit_bias_count > 0, FLAG_LOGIT_BIAS, 0)
    flags |= np.where(n > 1, FLAG_MULTI_N, 0)
    flags |= np.where(stream != 0, FLAG_STREAM, 0)
    flags |= np.where(top_logprobs >= DEEP_TOP_LOGPROBS, FLAG_DEEP_LOGPROBS, 0)
    return flags.astype(np.uint8)
