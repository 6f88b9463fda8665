"""Decode DWB1 batch containers (``schemas/batch_encoding.md``) into a ``DecodedBatch``.

Pure, and the same columns ``decode_json_batch`` builds for the same events: numeric columns are
NumPy views of the message, string columns a small dictionary plus codes, the contract checked per
column by ``batch_rules``. An invalid event is rejected alone (its bytes re-encoded as JSON, the
detail naming its index in the container); an unreadable container is rejected whole as ``invalid_batch``.
"""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import orjson

from pipeline.decode.batch import decoded_batch
from pipeline.decode.batch_format import (
    FIELDS,
    MAX_EVENTS,
    BatchFormatError,
    DictWire,
    NumericWire,
    parse_container,
)
from pipeline.decode.batch_rules import BOOLEANS, HASHES, Columns, StrColumn, find_violations
from pipeline.decode.json_events import DecodedBatch
from pipeline.decode.merge import empty_decoded
from pipeline.decode.rejects import INVALID_BATCH, OVERSIZED, TS_IN_FUTURE, Rejected
from schemas.event_rules import RULE


def decode_entries(wire: DictWire) -> StrColumn:
    """Dictionary entries as str (one object per distinct string), with UTF-8 and length facts."""
    bounds = wire.offsets.tolist()
    blob = wire.blob
    n = len(bounds) - 1
    codes = wire.codes.astype(np.intp)
    if blob.isascii():  # the common case: one decode, then slices; chars == bytes
        text = blob.decode("ascii")
        entries = [text[a:b] for a, b in pairwise(bounds)]
        return StrColumn(entries, codes, np.zeros(n, bool), np.diff(wire.offsets.astype(np.int64)))
    entries = []
    bad = np.zeros(n, bool)
    for i, (a, b) in enumerate(pairwise(bounds)):
        try:
            entries.append(blob[a:b].decode("utf-8"))
        except UnicodeDecodeError:
            entries.append(blob[a:b].decode("utf-8", errors="replace"))
            bad[i] = True
    return StrColumn(entries, codes, bad, np.fromiter((len(s) for s in entries), np.int64, n))


def read_columns(value: bytes) -> tuple[int, Columns]:
    """Parse a container and decode its dictionaries; raises BatchFormatError if it is corrupt."""
    n, wire = parse_container(value)
    missing = [f.name for f in FIELDS if f.required and f.name not in wire]
    if missing:
        raise BatchFormatError(f"required columns missing: {', '.join(missing)}")
    columns: Columns = {}
    for name, col in wire.items():
        columns[name] = decode_entries(col) if isinstance(col, DictWire) else col
    return n, columns


def event_json(columns: Columns, i: int) -> bytes:
    """Event ``i`` of a batch as a JSON object with the fields it carries (for dead letters)."""
    obj: dict[str, object] = {}
    for spec in FIELDS:
        col = columns.get(spec.name)
        if isinstance(col, StrColumn):
            code = int(col.codes[i])
            if code >= 0:
                obj[spec.name] = col.entries[code]
        elif col is not None and (col.present is None or col.present[i]):
            value = col.values[i].item()
            if spec.name in HASHES:
                value = f"{value:016x}"
            elif spec.name in BOOLEANS and value in (0, 1):
                value = bool(value)
            obj[spec.name] = value
    return orjson.dumps(obj)


def _is_identity(codes: np.ndarray) -> bool:
    return bool(codes[0] == 0 and codes[-1] == len(codes) - 1 and np.all(np.diff(codes) == 1)) if len(codes) else True


class _Rows:
    """Builds output columns for the selected (valid) events of one container."""

    def __init__(self, columns: Columns, sel: np.ndarray | None, k: int) -> None:
        self.columns = columns
        self.sel = sel
        self.k = k

    def _pick(self, array: np.ndarray) -> np.ndarray:
        return array if self.sel is None else array[self.sel]

    def number(self, name: str, dtype: type) -> np.ndarray:
        col = self.columns.get(name)
        default = RULE[name].stored_default(numeric=True)
        if col is None:
            return np.full(self.k, default, dtype)
        assert isinstance(col, NumericWire)
        out = self._pick(col.values).astype(dtype)  # a copy: the message buffer stays read-only
        if col.present is not None:
            absent = ~self._pick(col.present)
            if absent.any():
                out[absent] = default
        return out

    def strings(self, name: str, table: list[str] | None = None) -> list[str]:
        col = self.columns.get(name)
        default = RULE[name].stored_default(numeric=False)
        if col is None:
            return [default] * self.k
        assert isinstance(col, StrColumn)
        codes = self._pick(col.codes)
        if table is None and len(codes) == len(col.entries) and _is_identity(codes):
            return list(col.entries)  # unique per event (event ids): entries are already in event order
        entries = np.empty(len(col.entries) + 1, object)  # one object per distinct string, not per event
        entries[:-1] = table if table is not None else col.entries
        entries[-1] = default
        return entries[np.where(codes < 0, len(col.entries), codes)].tolist()  # type: ignore[no-any-return]

    def ip_keys(self) -> tuple[list[str], np.ndarray]:
        col = self.columns["client_ip"]
        assert isinstance(col, StrColumn)
        texts, keys, _ = col.ip_table
        return self.strings("client_ip", texts), keys[self._pick(col.codes)]


def _columns(columns: Columns, sel: np.ndarray | None, k: int, partition: int, offset: int) -> DecodedBatch:
    rows = _Rows(columns, sel, k)
    client_ip, ip_keys = rows.ip_keys()
    kafka = {"kafka_partition": partition, "kafka_offset": offset}

    def number(name: str, dtype: type) -> np.ndarray:
        return np.full(k, kafka[name], dtype) if name in kafka else rows.number(name, dtype)

    def strings(name: str) -> list[str]:
        return client_ip if name == "client_ip" else rows.strings(name)

    return decoded_batch(number, strings, ip_keys, [])


def _event_key(columns: Columns, i: int, key: bytes | None) -> bytes | None:
    """The contract's message key for one event (its account id), else the container's key."""
    col = columns["account_id"]
    assert isinstance(col, StrColumn)
    code = int(col.codes[i])
    if code < 0 or col.bad_utf8[code]:
        return key
    return col.entries[code].encode()


def decode_batched_message(
    value: bytes, key: bytes | None, partition: int, offset: int, *, max_message_bytes: int, max_ts_ms: int
) -> DecodedBatch:
    """One container: valid events as columns, invalid ones (or the whole message) as rejects."""
    claimed = int.from_bytes(value[4:8], "little") if len(value) >= 8 else 0
    budget = max_message_bytes * max(1, min(claimed, MAX_EVENTS))
    if len(value) > budget:
        detail = f"{len(value)} bytes > {claimed} events x DW_MAX_MESSAGE_BYTES={max_message_bytes}"
        return empty_decoded([Rejected(partition, offset, key, value, OVERSIZED, "", detail)])
    try:
        n, columns = read_columns(value)
    except BatchFormatError as exc:
        return empty_decoded([Rejected(partition, offset, key, value, INVALID_BATCH, "", str(exc))])
    violations = find_violations(n, columns)
    bad = violations.bad
    ts = columns["ts"]
    assert isinstance(ts, NumericWire)
    future = ~bad & (ts.values > max_ts_ms)
    rejects: list[Rejected] = []
    if bad.any() or future.any():
        rows = np.flatnonzero(bad)
        problems = dict(zip(rows.tolist(), violations.describe(rows), strict=True))
        for i in np.flatnonzero(future).tolist():
            problems[i] = (TS_IN_FUTURE, "ts",
                           "event time is further ahead of the wall clock than DW_MAX_FUTURE_SKEW_S")
        for i in sorted(problems):
            reason, field, detail = problems[i]
            rejects.append(Rejected(partition, offset, _event_key(columns, i, key), event_json(columns, i), reason,
                                    field, f"event {i} of {n} in batch: {detail}"))
        ok = np.flatnonzero(~(bad | future))
        decoded = _columns(columns, ok, len(ok), partition, offset)
    else:
        decoded = _columns(columns, None, n, partition, offset)
    decoded.rejects.extend(rejects)
    return decoded
