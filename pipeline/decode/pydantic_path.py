"""The reference decoder: the contract's pydantic model, one message at a time.

Every message either becomes an ``ApiCallEvent`` or one ``Rejected`` with a
field-level reason. ``fast_json`` uses ``decode_one`` for every message its
scanner does not decide with certainty, and the tests compare the fast path
with ``decode_json_batch_pydantic`` on generated input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pydantic import ValidationError

from pipeline.decode.batch import DecodedBatch, event_flags
from pipeline.decode.client_ip import ip_key
from pipeline.decode.rejects import (
    INVALID_JSON,
    INVALID_UTF8,
    NOT_AN_OBJECT,
    OVERSIZED,
    SCHEMA,
    TS_IN_FUTURE,
    Rejected,
)
from schemas.event import ApiCallEvent

_validate = ApiCallEvent.model_validate_json


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


def oversized(part: int, offset: int, key: bytes | None, value: bytes, max_message_bytes: int) -> Rejected:
    return Rejected(part, offset, key, value, OVERSIZED, "",
                    f"{len(value)} bytes > DW_MAX_MESSAGE_BYTES={max_message_bytes}")


def in_future(part: int, offset: int, key: bytes | None, value: bytes) -> Rejected:
    return Rejected(part, offset, key, value, TS_IN_FUTURE, "ts",
                    "event time is further ahead of the wall clock than DW_MAX_FUTURE_SKEW_S")


def decode_one(value: bytes, key: bytes | None, part: int, offset: int, *, max_message_bytes: int,
               max_ts_ms: int) -> ApiCallEvent | Rejected:
    """One message through the pydantic model: the event, or why it is rejected."""
    if len(value) > max_message_bytes:
        return oversized(part, offset, key, value, max_message_bytes)
    try:
        event = _validate(value)
    except ValidationError as exc:
        reason, field, detail = _schema_reject(exc)
        if reason == INVALID_JSON and not _is_utf8(value):
            reason, detail = INVALID_UTF8, "the message is not valid UTF-8"
        return Rejected(part, offset, key, value, reason, field, detail)
    if event.ts > max_ts_ms:
        return in_future(part, offset, key, value)
    return event


def decode_json_batch_pydantic(
    values: Sequence[bytes],
    keys: Sequence[bytes | None],
    partitions: Sequence[int],
    offsets: Sequence[int],
    *,
    max_message_bytes: int,
    max_ts_ms: int,
) -> DecodedBatch:
    """Validate and columnise a batch message by message (~35k events/s: the reference, not the hot path)."""
    accounts: list[str] = []
    rows: list[ApiCallEvent] = []
    row_part: list[int] = []
    row_offset: list[int] = []
    rejects: list[Rejected] = []
    for value, key, part, offset in zip(values, keys, partitions, offsets, strict=True):
        result = decode_one(value, key, part, offset, max_message_bytes=max_message_bytes, max_ts_ms=max_ts_ms)
        if isinstance(result, Rejected):
            rejects.append(result)
            continue
        rows.append(result)
        accounts.append(result.account_id)
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


def hex64(value: str | None) -> int:
    return int(value, 16) if value else 0


def _kernel_columns(rows: list[ApiCallEvent], parts: list[int]) -> dict[str, np.ndarray]:
    return {
        "part": np.array(parts, np.int16),
        "ts_ms": np.array([e.ts for e in rows], np.int64),
        "prompt_tokens": np.array([e.prompt_tokens for e in rows], np.uint32),
        "completion_tokens": np.array([e.completion_tokens for e in rows], np.uint32),
        "reasoning_tokens": np.array([e.reasoning_tokens for e in rows], np.uint32),
        "prompt_hash": np.array([hex64(e.prompt_hash) for e in rows], np.uint64),
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
        "prompt_hash": np.array([hex64(e.prompt_hash) for e in rows], np.uint64),
        "prompt_simhash": np.array([hex64(e.prompt_simhash) for e in rows], np.uint64),
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
