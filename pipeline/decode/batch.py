"""The decoder's output: valid events as columns plus rejects, and per-event derived keys."""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
from schemas.tables import API_CALLS


@dataclass
class DecodedBatch:
    """Valid events as columns (kernel inputs and raw-table columns) plus rejects."""

    account_ids: list[str]
    kernel: dict[str, np.ndarray]  # part, ts_ms, tokens, prompt_hash, ip_key, status, flags
    raw: dict[str, Sequence[object] | np.ndarray]  # api_calls table columns
    rejects: list[Rejected]

    def __len__(self) -> int:
        return len(self.account_ids)


def flags_of_columns(elicits: np.ndarray, logprobs: np.ndarray, top_logprobs: np.ndarray,
                     logit_bias_count: np.ndarray, n: np.ndarray, stream: np.ndarray) -> np.ndarray:
    """The request-shape flags of each event (top_logprobs -1 means absent)."""
    flags = np.where(elicits != 0, FLAG_REASONING, 0)
    flags |= np.where((logprobs != 0) | (top_logprobs > 0), FLAG_LOGPROBS, 0)
    flags |= np.where(logit_bias_count > 0, FLAG_LOGIT_BIAS, 0)
    flags |= np.where(n > 1, FLAG_MULTI_N, 0)
    flags |= np.where(stream != 0, FLAG_STREAM, 0)
    flags |= np.where(top_logprobs >= DEEP_TOP_LOGPROBS, FLAG_DEEP_LOGPROBS, 0)
    return flags.astype(np.uint8)


_NUMPY_TYPES = {"UInt8": np.uint8, "UInt16": np.uint16, "UInt32": np.uint32, "UInt64": np.uint64, "Int8": np.int8,
                "Float32": np.float32, "DateTime64(3, 'UTC')": np.int64}  # DateTime64(3): epoch milliseconds
# The api_calls table's columns (schemas/tables.py): name and NumPy type; None = strings (a list of str).
RAW_COLUMNS: tuple[tuple[str, type | None], ...] = tuple(
    (name, None if "String" in ch_type else _NUMPY_TYPES[ch_type]) for name, ch_type in API_CALLS.columns)


def decoded_batch(number: Callable[[str, type], np.ndarray], strings: Callable[[str], list[str]],
                  ip_keys: np.ndarray, rejects: list[Rejected]) -> DecodedBatch:
    """Every decoder's output, from its getters of one api_calls column; the kernel columns are views of those."""
    raw = {name: strings(name) if dtype is None else number(name, dtype) for name, dtype in RAW_COLUMNS}
    kernel = {
        "part": raw["kafka_partition"].astype(np.int16), "ts_ms": raw["ts"], "prompt_tokens": raw["prompt_tokens"],
        "completion_tokens": raw["completion_tokens"], "reasoning_tokens": raw["reasoning_tokens"],
        "prompt_hash": raw["prompt_hash"], "ip_key": ip_keys, "status": raw["status"],
        "flags": flags_of_columns(raw["elicits_reasoning"], raw["logprobs"], raw["top_logprobs"],
                                  raw["logit_bias_count"], raw["n"], raw["stream"]),
    }
    return DecodedBatch(list(raw["account_id"]), kernel, raw, rejects)  # type: ignore[arg-type]
