"""Decode a fetched batch of one-JSON-event-per-message values into columns.

Pure: bytes in, ``DecodedBatch`` out. Validation is the contract's pydantic model
(``schemas.event.ApiCallEvent``); every message either becomes one row of the
columns or one ``Rejected`` with a field-level reason. Nothing is dropped.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import ValidationError

from pipeline.decode.rejects import (
    INVALID_JSON,
    INVALID_UTF8,
    NOT_AN_OBJECT,
    OVERSIZED,
    SCHEMA,
    TS_IN_FUTURE,
    Rejected,
)
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

_IP_CACHE_MAX = 500_000
_ip_cache: dict[str, int] = {}


def ip_key(address: str) -> int:
    """64-bit key of a client IP: the IPv4 integer, or the two IPv6 halves folded.

    IPv4 keys keep their structure (key >> 8 is the /24 prefix) for linking.
    """
    key = _ip_cache.get(address)
    if key is None:
        ip = ipaddress.ip_address(address)
        value = int(ip)
        key = value if ip.version == 4 else ((value >> 64) ^ (value & 0xFFFFFFFFFFFFFFFF))
        if len(_ip_cache) >= _IP_CACHE_MAX:
            _ip_cache.clear()  # bounded memory; recomputing is cheap
        _ip_cache[address] = key
    return key


@dataclass
class DecodedBatch:
    """Valid events as columns (kernel inputs and raw-table columns) plus rejects."""

    account_ids: list[str]
    kernel: dict[str, np.ndarray]  # part, ts_ms, tokens, prompt_hash, ip_key, status, flags
    raw: dict[str, Sequence[object] | np.ndarray]  # api_calls table columns
    rejects: list[Rejected]

    def __len__(self) -> int:
        return len(self.account_ids)


def _schema_reject(exc: ValidationError) -> tuple[str, str, str]:
    err = exc.errors(include_url=False)[0]
    kind = err["type"]
    if kind == "json_invalid":
        return INVALID_JSON, "", err["msg"]
    if kind in ("model_type", "model_attributes_type"):
        return NOT_AN_OBJECT, "", "the message is JSON but not an object"
    field = ".".join(str(p) for p in err["loc"])
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return SCHEMA, field, f"{field}: {err['msg']}{more}"


def decode_json_batch(
    values: Sequence[bytes],
    keys: Sequence[bytes | None],
    partitions: Sequence[int],
    offsets: Sequence[int],
    *,
    max_message_bytes: int,
    max_ts_ms: int,
) -> DecodedBatch:
    """Validate and columnise a batch; ``max_ts_ms`` is the latest acceptable event time."""
    accounts: list[str] = []
    rows: list[ApiCallEvent] = []
    row_part: list[int] = []
    row_offset: list[int] = []
    rejects: list[Rejected] = []
    validate = ApiCallEvent.model_validate_json
    for value, key, part, offset in zip(values, keys, partitions, offsets, strict=True):
        if len(value) > max_message_bytes:
            rejects.append(Rejected(part, offset, key, value, OVERSIZED, "",
                                    f"{len(value)} bytes > DW_MAX_MESSAGE_BYTES={max_message_bytes}"))
            continue
        try:
            event = validate(value)
        except ValidationError as exc:
            reason, field, detail = _schema_reject(exc)
            if reason == INVALID_JSON and not _is_utf8(value):
                reason, detail = INVALID_UTF8, "the message is not valid UTF-8"
            rejects.append(Rejected(part, offset, key, value, reason, field, detail))
            continue
        if event.ts > max_ts_ms:
            rejects.append(Rejected(part, offset, key, value, TS_IN_FUTURE, "ts",
                                    "event time is further ahead of the wall clock than DW_MAX_FUTURE_SKEW_S"))
            continue
        rows.append(event)
        accounts.append(event.account_id)
        row_part.append(part)
        row_offset.append(offset)
    return DecodedBatch(accounts, _kernel_columns(rows, row_part), _raw_columns(rows, row_part, row_offset),
                        rejects)


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _hex64(value: str | None) -> int:
    return int(value, 16) if value else 0


def event_flags(e: ApiCallEvent) -> int:
    return (
        (FLAG_REASONING if e.elicits_reasoning else 0)
        | (FLAG_LOGPROBS if e.logprobs or (e.top_logprobs or 0) > 0 else 0)
        | (FLAG_LOGIT_BIAS if e.logit_bias_count > 0 else 0)
        | (FLAG_MULTI_N if e.n > 1 else 0)
        | (FLAG_STREAM if e.stream else 0)
        | (FLAG_DEEP_LOGPROBS if (e.top_logprobs or 0) >= DEEP_TOP_LOGPROBS else 0)
    )


def _kernel_columns(rows: list[ApiCallEvent], parts: list[int]) -> dict[str, np.ndarray]:
    return {
        "part": np.array(parts, np.int16),
        "ts_ms": np.array([e.ts for e in rows], np.int64),
        "prompt_tokens": np.array([e.prompt_tokens for e in rows], np.uint32),
        "completion_tokens": np.array([e.completion_tokens for e in rows], np.uint32),
        "reasoning_tokens": np.array([e.reasoning_tokens for e in rows], np.uint32),
        "prompt_hash": np.array([_hex64(e.prompt_hash) for e in rows], np.uint64),
        "ip_key": np.array([ip_key(e.client_ip) for e in rows], np.uint64),
        "status": np.array([e.status for e in rows], np.uint16),
        "flags": np.array([event_flags(e) for e in rows], np.uint8),
    }


def _float_or_nan(value: float | None) -> float:
    return math.nan if value is None else value


def _raw_columns(rows: list[ApiCallEvent], parts: list[int], offsets: list[int]) -> dict[str, object]:
    return {
        "event_id": [e.event_id for e in rows],
        "ts": np.array([e.ts for e in rows], np.int64),
        "account_id": [e.account_id for e in rows],
        "api_key_id": [e.api_key_id for e in rows],
        "client_ip": [e.client_ip for e in rows],
        "asn": np.array([e.asn or 0 for e in rows], np.uint32),
        "network_type": [e.network_type for e in rows],
        "country": [e.country or "" for e in rows],
        "user_agent": [e.user_agent or "" for e in rows],
        "endpoint": [e.endpoint for e in rows],
        "model": [e.model for e in rows],
        "status": np.array([e.status for e in rows], np.uint16),
        "latency_ms": np.array([e.latency_ms or 0 for e in rows], np.uint32),
        "prompt_tokens": np.array([e.prompt_tokens for e in rows], np.uint32),
        "completion_tokens": np.array([e.completion_tokens for e in rows], np.uint32),
        "reasoning_tokens": np.array([e.reasoning_tokens for e in rows], np.uint32),
        "prompt_hash": np.array([_hex64(e.prompt_hash) for e in rows], np.uint64),
        "prompt_simhash": np.array([_hex64(e.prompt_simhash) for e in rows], np.uint64),
        "topic": [e.topic or "" for e in rows],
        "elicits_reasoning": np.array([e.elicits_reasoning for e in rows], np.uint8),
        "temperature": np.array([_float_or_nan(e.temperature) for e in rows], np.float32),
        "top_p": np.array([_float_or_nan(e.top_p) for e in rows], np.float32),
        "n": np.array([e.n for e in rows], np.uint16),
        "max_tokens": np.array([e.max_tokens or 0 for e in rows], np.uint32),
        "logprobs": np.array([e.logprobs for e in rows], np.uint8),
        "top_logprobs": np.array([-1 if e.top_logprobs is None else e.top_logprobs for e in rows], np.int8),
        "logit_bias_count": np.array([e.logit_bias_count for e in rows], np.uint16),
        "stream": np.array([e.stream for e in rows], np.uint8),
        "payment_fingerprint": [e.payment_fingerprint or "" for e in rows],
        "kafka_partition": np.array(parts, np.uint16),
        "kafka_offset": np.array(offsets, np.uint64),
    }
