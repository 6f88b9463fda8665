"""Fast batch decoding: the Numba scanner for most messages, pydantic for the rest.

Same result as ``pydantic_path.decode_json_batch_pydantic`` for every input (rows,
order, column values and dtypes, rejects with reason, field, bytes and detail);
the differential tests hold it to that. The batch is joined into one buffer and
scanned by ``pipeline.kernels.json_scan.scan_events``; per message it either
decides (valid / rejected), leaves a cheap check to Python (IPv6 addresses,
floats that need exact rounding) or falls back to ``pydantic_path.decode_one``.

String columns are built per distinct value, not per event: the scanner interns
them (``pipeline.kernels.intern``), each distinct value is decoded once (one
decode and split of the arena), and a column is an object-array gather of those
``str`` objects by the rows' ids.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.decode.batch import DecodedBatch, flags_of_columns
from pipeline.decode.client_ip import ip_entry, ip_key
from pipeline.decode.pydantic_path import decode_one, hex64, in_future, oversized
from pipeline.decode.rejects import SCHEMA, Rejected
from pipeline.kernels import event_spec as spec
from pipeline.kernels.json_scan import scan_events
from schemas.event import ApiCallEvent

# Row of each output column in the scanner's arrays.
_I = {spec.FIELD_NAMES[f]: r for r, f in enumerate(spec.INT_FIELDS)}
_U = {spec.FIELD_NAMES[f]: r for r, f in enumerate(spec.UINT_FIELDS)}
_F = {spec.FIELD_NAMES[f]: r for r, f in enumerate(spec.FLOAT_FIELDS)}
_STR = {spec.FIELD_NAMES[f]: r for r, f in enumerate(spec.STR_FIELDS)}
_NET_INDEX = {name: i for i, name in enumerate(spec.NETWORK_TYPES)}
_NET_OBJECTS = np.array(spec.NETWORK_TYPES, dtype=object)
_FLOAT_PEND = ((spec.PEND_TEMPERATURE, "temperature", spec.F_TEMPERATURE), (spec.PEND_TOP_P, "top_p", spec.F_TOP_P))


@dataclass
class PathCounts:
    """How the messages of a batch were decided: it is the throughput story."""

    fast: int = 0  # by the scanner alone
    pending: int = 0  # by the scanner plus a cheap Python check (IPv6, float rounding)
    fallback: int = 0  # by pydantic

    def add(self, other: PathCounts) -> None:
        self.fast += other.fast
        self.pending += other.pending
        self.fallback += other.fallback


# --- reject messages: pydantic's wording for the scanner's error codes --------------------------
def _message(f: int, code: int) -> str:
    """pydantic's message for the first error of field f (the differential tests compare them)."""
    lo, hi = int(spec.LO[f]), int(spec.HI[f])
    kind = spec.KIND[f]
    if code == spec.E_MISSING:
        return "Field required"
    if code == spec.E_INT_TYPE:
        return "Input should be a valid integer"
    if code == spec.E_GE:
        return f"Input should be greater than or equal to {lo}"
    if code == spec.E_LE:
        return f"Input should be less than or equal to {hi}"
    if code == spec.E_STR_TYPE:
        return "Input should be a valid string"
    if code == spec.E_TOO_SHORT:
        return f"String should have at least {lo} character{'' if lo == 1 else 's'}"
    if code == spec.E_TOO_LONG:
        return f"String should have at most {hi} character{'' if hi == 1 else 's'}"
    if code == spec.E_PATTERN:
        return "String should match pattern '^[A-Z]{2}$'" if kind == spec.K_COUNTRY else \
            "String should match pattern '^[0-9a-f]{16}$'"
    if code == spec.E_LITERAL:
        if kind == spec.K_VERSION:
            return "Input should be 1"
        names = [f"'{t}'" for t in spec.NETWORK_TYPES]
        return f"Input should be {', '.join(names[:-1])} or {names[-1]}"
    if code == spec.E_BOOL_TYPE:
        return "Input should be a valid boolean"
    if code == spec.E_FLOAT_TYPE:
        return "Input should be a valid number"
    if code == spec.E_TS_TYPE:
        return "Value error, must be an RFC 3339 string or epoch milliseconds"
    if code == spec.E_TS_BOOL:
        return "Value error, must be an RFC 3339 string or epoch milliseconds, not a boolean"
    if code == spec.E_TS_RANGE:
        return "Value error, event time outside 2000-01-01..2100-01-01"
    if code == spec.E_IP:
        return "Value error, not an IPv4 or IPv6 address"
    raise ValueError(f"unknown scanner error code {code}")


_messages: dict[tuple[int, int], str] = {}


def schema_detail(f: int, code: int, count: int) -> str:
    """The detail pydantic_path gives: ``field: message`` and how many more fields fail (same text)."""
    msg = _messages.get((f, code))
    if msg is None:
        msg = _messages[(f, code)] = _message(f, code)
    more = f" (+{count - 1} more)" if count > 1 else ""
    return f"{spec.FIELD_NAMES[f]}: {msg}{more}"


# --- the batch -----------------------------------------------------------------------------
class _Scan:
    """One batch's buffer and scanner outputs, with the Python-side fix-ups."""

    def __init__(self, values: Sequence[bytes], max_message_bytes: int, max_ts_ms: int) -> None:
        n = len(values)
        self.joined = b"".join(values)
        buf = np.frombuffer(self.joined, np.uint8)
        lens = np.fromiter(map(len, values), np.int64, n)
        starts = np.zeros(n, np.int64)
        np.cumsum(lens[:-1], out=starts[1:])
        (self.status, self.err_field, self.err_code, self.err_count, self.pend, self.ints, self.uints,
         self.floats, self.str_ids, arena, self.num_start, self.num_end) = scan_events(
            buf, starts, lens, int(max_message_bytes), int(max_ts_ms))
        # Every distinct string of the batch, decoded once; id 0 is "".
        self.distinct = np.array(arena.tobytes().decode().split("\x00"), dtype=object)
        self.max_ts_ms = max_ts_ms

    def resolve_pending(self, i: int) -> str | None:
        """Finish an S_PENDING message; returns its normalised client_ip when it was IPv6.

        Leaves status S_FALLBACK when a check fails: pydantic then words the reject.
        """
        bits = int(self.pend[i])
        ip_text = None
        if bits & spec.PEND_IP:
            resolved = ip_entry(self.distinct[self.str_ids[_STR["client_ip"], i]])
            if resolved is None:
                self.status[i] = spec.S_FALLBACK
                return None
            ip_text, self.uints[_U["client_ip"], i] = resolved
        for bit, name, f in _FLOAT_PEND:
            if bits & bit:
                row = _F[name]
                x = float(self.joined[self.num_start[row, i]:self.num_end[row, i]])
                if not spec.LO[f] <= x <= spec.HI[f]:  # also false for NaN; inf is out of range
                    self.status[i] = spec.S_FALLBACK
                    return None
                self.floats[row, i] = x
        self.status[i] = spec.S_FUTURE if self.ints[_I["ts"], i] > self.max_ts_ms else spec.S_OK
        return ip_text

    def write_event(self, i: int, e: ApiCallEvent) -> None:
        """Put a pydantic-decoded event's values into row i of the scanner's columns."""
        ints, I = self.ints, _I  # noqa: E741
        ints[I["ts"], i] = e.ts
        ints[I["asn"], i] = e.asn or 0
        ints[I["network_type"], i] = _NET_INDEX[e.network_type]
        ints[I["status"], i] = e.status
        ints[I["latency_ms"], i] = e.latency_ms or 0
        ints[I["prompt_tokens"], i] = e.prompt_tokens
        ints[I["completion_tokens"], i] = e.completion_tokens
        ints[I["reasoning_tokens"], i] = e.reasoning_tokens
        ints[I["elicits_reasoning"], i] = e.elicits_reasoning
        ints[I["n"], i] = e.n
        ints[I["max_tokens"], i] = e.max_tokens or 0
        ints[I["logprobs"], i] = e.logprobs
        ints[I["top_logprobs"], i] = -1 if e.top_logprobs is None else e.top_logprobs
        ints[I["logit_bias_count"], i] = e.logit_bias_count
        ints[I["stream"], i] = e.stream
        self.uints[_U["prompt_hash"], i] = hex64(e.prompt_hash)
        self.uints[_U["prompt_simhash"], i] = hex64(e.prompt_simhash)
        self.uints[_U["client_ip"], i] = ip_key(e.client_ip)
        self.floats[_F["temperature"], i] = math.nan if e.temperature is None else e.temperature
        self.floats[_F["top_p"], i] = math.nan if e.top_p is None else e.top_p
        self.str_ids[:, i] = 0  # its strings are patched in from the event (see _columns)

    def strings(self, name: str, keep: np.ndarray) -> list[str]:
        """The column's strings for the kept rows: a gather of the distinct values by id."""
        return self.distinct[self.str_ids[_STR[name], keep]].tolist()



def decode_json_batch_fast(
    values: Sequence[bytes],
    keys: Sequence[bytes | None],
    partitions: Sequence[int],
    offsets: Sequence[int],
    *,
    max_message_bytes: int,
    max_ts_ms: int,
) -> tuple[DecodedBatch, PathCounts]:
    """``decode_json_batch`` on the fast path, with how each message was decided."""
    n = len(values)
    if not len(keys) == len(partitions) == len(offsets) == n:
        raise ValueError("values, keys, partitions and offsets must have the same length")
    scan = _Scan(values, max_message_bytes, max_ts_ms)
    status = scan.status
    counts = PathCounts()
    ip_patch: dict[int, str] = {}
    for i in np.flatnonzero(status == spec.S_PENDING).tolist():
        ip_text = scan.resolve_pending(i)
        if status[i] != spec.S_FALLBACK:
            counts.pending += 1
        if ip_text is not None and status[i] == spec.S_OK:
            ip_patch[i] = ip_text
    slow_events: dict[int, ApiCallEvent] = {}
    slow_rejects: dict[int, Rejected] = {}
    for i in np.flatnonzero(status == spec.S_FALLBACK).tolist():
        counts.fallback += 1
        result = decode_one(values[i], keys[i], partitions[i], offsets[i], max_message_bytes=max_message_bytes,
                            max_ts_ms=max_ts_ms)
        if isinstance(result, Rejected):
            slow_rejects[i] = result
            status[i] = spec.S_REJECT
        else:
            slow_events[i] = result
            scan.write_event(i, result)
            status[i] = spec.S_OK
    counts.fast = n - counts.pending - counts.fallback
    rejects = _rejects(scan, values, keys, partitions, offsets, slow_rejects, max_message_bytes)
    keep = np.flatnonzero(status == spec.S_OK)
    return _columns(scan, keep, partitions, offsets, slow_events, ip_patch, rejects), counts


def _rejects(scan: _Scan, values: Sequence[bytes], keys: Sequence[bytes | None], partitions: Sequence[int],
             offsets: Sequence[int], slow: dict[int, Rejected], max_message_bytes: int) -> list[Rejected]:
    out: list[Rejected] = []
    status = scan.status
    rejected_rows = (status == spec.S_REJECT) | (status == spec.S_FUTURE) | (status == spec.S_OVERSIZED)
    for i in np.flatnonzero(rejected_rows).tolist():
        rejected = slow.get(i)
        if rejected is None:
            part, offset, key, value = partitions[i], offsets[i], keys[i], values[i]
            if status[i] == spec.S_OVERSIZED:
                rejected = oversized(part, offset, key, value, max_message_bytes)
            elif status[i] == spec.S_FUTURE:
                rejected = in_future(part, offset, key, value)
            else:
                f = int(scan.err_field[i])
                detail = schema_detail(f, int(scan.err_code[i]), int(scan.err_count[i]))
                rejected = Rejected(part, offset, key, value, SCHEMA, spec.FIELD_NAMES[f], detail)
        out.append(rejected)
    return out


def _columns(scan: _Scan, keep: np.ndarray, partitions: Sequence[int], offsets: Sequence[int],
             slow: dict[int, ApiCallEvent], ip_patch: dict[int, str], rejects: list[Rejected]) -> DecodedBatch:
    def ints(name: str, dtype: type) -> np.ndarray:
        return scan.ints[_I[name], keep].astype(dtype)

    def strings(name: str) -> list[str]:
        column = scan.strings(name, keep)
        if slow:  # rows pydantic decoded carry their own strings
            rows = np.fromiter(slow, np.int64, len(slow))
            for pos, i in zip(np.searchsorted(keep, rows).tolist(), rows.tolist(), strict=True):
                column[pos] = getattr(slow[i], name) or ""
        if name == "client_ip" and ip_patch:
            rows = np.fromiter(ip_patch, np.int64, len(ip_patch))
            for pos, i in zip(np.searchsorted(keep, rows).tolist(), rows.tolist(), strict=True):
                column[pos] = ip_patch[i]
        return column

    parts = np.asarray(partitions, np.int64)[keep]
    top_logprobs = scan.ints[_I["top_logprobs"], keep]
    flags = flags_of_columns(scan.ints[_I["elicits_reasoning"], keep], scan.ints[_I["logprobs"], keep],
                             top_logprobs, scan.ints[_I["logit_bias_count"], keep], scan.ints[_I["n"], keep],
                             scan.ints[_I["stream"], keep])
    kernel = {
        "part": parts.astype(np.int16),
        "ts_ms": ints("ts", np.int64),
        "prompt_tokens": ints("prompt_tokens", np.uint32),
        "completion_tokens": ints("completion_tokens", np.uint32),
        "reasoning_tokens": ints("reasoning_tokens", np.uint32),
        "prompt_hash": scan.uints[_U["prompt_hash"], keep],
        "ip_key": scan.uints[_U["client_ip"], keep],
        "status": ints("status", np.uint16),
        "flags": flags,
    }
    account_ids = strings("account_id")
    raw: dict[str, object] = {
        "event_id": strings("event_id"),
        "ts": ints("ts", np.int64),
        "account_id": list(account_ids),
        "api_key_id": strings("api_key_id"),
        "client_ip": strings("client_ip"),
        "asn": ints("asn", np.uint32),
        "network_type": _NET_OBJECTS[scan.ints[_I["network_type"], keep]].tolist(),
        "country": strings("country"),
        "user_agent": strings("user_agent"),
        "endpoint": strings("endpoint"),
        "model": strings("model"),
        "status": ints("status", np.uint16),
        "latency_ms": ints("latency_ms", np.uint32),
        "prompt_tokens": ints("prompt_tokens", np.uint32),
        "completion_tokens": ints("completion_tokens", np.uint32),
        "reasoning_tokens": ints("reasoning_tokens", np.uint32),
        "prompt_hash": scan.uints[_U["prompt_hash"], keep],
        "prompt_simhash": scan.uints[_U["prompt_simhash"], keep],
        "topic": strings("topic"),
        "elicits_reasoning": ints("elicits_reasoning", np.uint8),
        "temperature": scan.floats[_F["temperature"], keep].astype(np.float32),
        "top_p": scan.floats[_F["top_p"], keep].astype(np.float32),
        "n": ints("n", np.uint16),
        "max_tokens": ints("max_tokens", np.uint32),
        "logprobs": ints("logprobs", np.uint8),
        "top_logprobs": top_logprobs.astype(np.int8),
        "logit_bias_count": ints("logit_bias_count", np.uint16),
        "stream": ints("stream", np.uint8),
        "payment_fingerprint": strings("payment_fingerprint"),
        "kafka_partition": parts.astype(np.uint16),
        "kafka_offset": np.asarray(offsets, np.uint64)[keep],
    }
    return DecodedBatch(account_ids, kernel, raw, rejects)


_WARM_UP = (
    b'{"event_id":"w1","ts":1770888600123,"account_id":"a","api_key_id":"k","client_ip":"10.0.0.1",'
    b'"endpoint":"/v1/x","model":"m","status":200,"prompt_tokens":1,"completion_tokens":2,"temperature":0.7}',
    b'{"event_id":"w\\u00e92","ts":"2026-02-12T09:30:00.123Z","account_id":"a","api_key_id":"k",'
    b'"client_ip":"2001:db8::1","endpoint":"/v1/x","model":"m","status":200,"prompt_tokens":1,'
    b'"completion_tokens":2,"top_p":0.30000000000000004,"x":[{"y":null}]}',
    b'{"event_id":""}',
    b"not json",
)


def warm_up() -> None:
    """Load (or compile) the scanner so the first real batch is not slow."""
    n = len(_WARM_UP)
    decode_json_batch_fast(list(_WARM_UP), [None] * n, [0] * n, list(range(n)), max_message_bytes=65_536,
                           max_ts_ms=2**62)
