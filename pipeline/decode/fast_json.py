"""Fast batch decoding: the Numba scanner for most messages, pydantic for the rest.

Same result as ``pydantic_path.decode_json_batch_pydantic`` for every input (rows, order, column
values and dtypes, rejects); the differential tests hold it to that. Per message the scanner
(``pipeline.kernels.json_scan``) decides, leaves a cheap check or the ``prompt_text`` derivation
(``PEND_DERIVE``) to Python, or falls back to ``pydantic_path.decode_one``. String columns are one
object-array gather per column of the interned distinct values. docs/architecture.md, "The JSON scanner".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.decode.batch import DecodedBatch, decoded_batch
from pipeline.decode.client_ip import ip_entry, ip_key
from pipeline.decode.pydantic_path import decode_one, hex64, in_future, oversized
from pipeline.decode.rejects import SCHEMA, Rejected
from pipeline.kernels import event_spec as spec
from pipeline.kernels.json_scan import scan_events
from schemas.event import ApiCallEvent
from schemas.event_rules import message
from schemas.prompt_derive import DERIVED_FIELDS, derive_many

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
    pending: int = 0  # by the scanner plus Python: a cheap check (IPv6, float rounding), or prompt_text derivation
    fallback: int = 0  # by pydantic

    def add(self, other: PathCounts) -> None:
        self.fast += other.fast
        self.pending += other.pending
        self.fallback += other.fallback


def schema_detail(f: int, code: int, count: int) -> str:
    """The detail pydantic_path gives: ``field: message`` and how many more fields fail (same text)."""
    more = f" (+{count - 1} more)" if count > 1 else ""
    return f"{spec.FIELD_NAMES[f]}: {message(spec.FIELD_NAMES[f], spec.ERRORS[code])}{more}"


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
         self.floats, self.str_ids, arena, self.num_start, self.num_end, self.missing, self.text_start,
         self.text_end, self.scratch) = scan_events(buf, starts, lens, int(max_message_bytes), int(max_ts_ms))
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

    def resolve_derive_only(self, rows: np.ndarray) -> None:
        """S_PENDING rows with nothing but PEND_DERIVE: valid, so in the future or kept (derivation cannot fail)."""
        future = self.ints[_I["ts"], rows] > self.max_ts_ms
        self.status[rows] = np.where(future, spec.S_FUTURE, spec.S_OK)

    def derive(self, rows: np.ndarray) -> None:
        """Fill the derived fields the rows lack from their prompt_text, as the model does.

        Each distinct text is derived once, for every field some row lacks; a row takes
        only the fields it lacks (the others keep the values it carried).
        """
        nb = len(self.joined)
        scratch = self.scratch.tobytes() if (self.text_start[rows] >= nb).any() else b""
        index: dict[bytes, int] = {}
        text_of = np.fromiter(
            (index.setdefault(self.joined[s:e] if s < nb else scratch[s - nb:e - nb], len(index))
             for s, e in zip(self.text_start[rows].tolist(), self.text_end[rows].tolist(), strict=True)),
            np.int64, rows.size)
        lacks = {name: (self.missing[rows] >> j) & 1 == 1 for j, name in enumerate(DERIVED_FIELDS)}
        fields = [name for name in DERIVED_FIELDS if lacks[name].any()]
        values = derive_many([raw.decode() for raw in index], fields)  # the scanner checked the UTF-8
        for name in fields:
            at, of = rows[lacks[name]], text_of[lacks[name]]
            if name in _U:  # the hashes
                self.uints[_U[name], at] = np.array([hex64(str(h)) for h in values[name]], np.uint64)[of]
            elif name in _I:  # elicits_reasoning
                self.ints[_I[name], at] = np.array(values[name], np.int64)[of]
            else:  # topic: its values join the distinct strings
                names, ids = np.unique(np.array(values[name], dtype=object), return_inverse=True)
                self.str_ids[_STR[name], at] = len(self.distinct) + ids[of]
                self.distinct = np.concatenate([self.distinct, names])

    def write_event(self, i: int, e: ApiCallEvent) -> None:
        """Put a pydantic-decoded event's values into row i of the scanner's columns."""
        for r, f in enumerate(spec.INT_FIELDS):
            v = getattr(e, spec.FIELD_NAMES[f])
            self.ints[r, i] = spec.DEFAULT[f] if v is None else _NET_INDEX[v] if spec.KIND[f] == spec.K_NET else v
        for r, f in enumerate(spec.UINT_FIELDS):
            v = getattr(e, spec.FIELD_NAMES[f])
            self.uints[r, i] = ip_key(v) if spec.KIND[f] == spec.K_IP else hex64(v)
        for r, f in enumerate(spec.FLOAT_FIELDS):
            v = getattr(e, spec.FIELD_NAMES[f])
            self.floats[r, i] = math.nan if v is None else v
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
    pending = np.flatnonzero(status == spec.S_PENDING)
    scan.resolve_derive_only(pending[scan.pend[pending] == spec.PEND_DERIVE])
    for i in np.flatnonzero(status == spec.S_PENDING).tolist():
        ip_text = scan.resolve_pending(i)
        if ip_text is not None and status[i] == spec.S_OK:
            ip_patch[i] = ip_text
    counts.pending = int(np.count_nonzero(status[pending] != spec.S_FALLBACK))
    derive = pending[(scan.pend[pending] & spec.PEND_DERIVE != 0) & (status[pending] == spec.S_OK)]
    if derive.size:
        scan.derive(derive)
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
    kafka = {"kafka_partition": partitions, "kafka_offset": offsets}

    def number(name: str, dtype: type) -> np.ndarray:
        if name in kafka:
            return np.asarray(kafka[name], dtype)[keep]
        if name in _I:
            return scan.ints[_I[name], keep].astype(dtype)
        if name in _U:
            return scan.uints[_U[name], keep].astype(dtype, copy=False)
        return scan.floats[_F[name], keep].astype(dtype)

    def strings(name: str) -> list[str]:
        if name == "network_type":
            return _NET_OBJECTS[scan.ints[_I[name], keep]].tolist()  # type: ignore[no-any-return]
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

    return decoded_batch(number, strings, scan.uints[_U["client_ip"], keep], rejects)


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
