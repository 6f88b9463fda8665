"""The measured alternative to the Numba JSON scanner: msgspec, for ``decode_bench --msgspec``.

Kept so issue 16's figures (docs/benchmarks.md, "Consumer and decoder choice") can be measured again;
the worker never imports it. ``EventStruct`` is derived from the pydantic model at import; what the
model checks in Python validators is checked per batch by ``decode_json_batch_msgspec``, and every
message that fails a check is judged again by the model alone (``pydantic_path.decode_one``), so
rejects are the model's and the output is the scanner's ``DecodedBatch``.
"""

from __future__ import annotations

import types
from collections.abc import Sequence
from operator import attrgetter
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import msgspec
import numpy as np
from annotated_types import Ge, Le, MaxLen, MinLen
from pydantic import StringConstraints
from pydantic.fields import FieldInfo

from pipeline.decode.batch import DecodedBatch, decoded_batch
from pipeline.decode.client_ip import ip_entry
from pipeline.decode.pydantic_path import decode_one, in_future
from pipeline.decode.rejects import Rejected
from schemas.event import TS_MAX_MS, TS_MIN_MS, ApiCallEvent, _rfc3339_to_ms
from schemas.event_rules import RULE
from schemas.prompt_derive import DERIVED_FIELDS, derive_from_prompt
from schemas.tables import API_CALLS

# The model's "before" validator for ts accepts these; the range is checked on the
# integer form here, on the parsed form by the decoder.
_OVERRIDES: dict[str, Any] = {"ts": Annotated[int, msgspec.Meta(ge=TS_MIN_MS, lt=TS_MAX_MS)] | str}
_META_NAMES = {Ge: "ge", Le: "le", MinLen: "min_length", MaxLen: "max_length"}  # same name in both


def _anchored(pattern: str) -> str:
    # pydantic's regex engine matches "$" only at the very end; Python's re (msgspec)
    # also before a final newline, so "…\n" would pass. \Z is Python's "very end".
    return pattern[:-1] + r"\Z" if pattern.endswith("$") and not pattern.endswith(r"\$") else pattern


def _constraints(items: list[Any], patterns: bool) -> dict[str, Any]:
    """msgspec.Meta keywords for pydantic/annotated-types constraint objects."""
    out: dict[str, Any] = {}
    for item in items:
        if isinstance(item, FieldInfo):
            out.update(_constraints(item.metadata, patterns))
        elif isinstance(item, StringConstraints):
            for name in ("min_length", "max_length"):
                if getattr(item, name) is not None:
                    out[name] = getattr(item, name)
            if item.pattern is not None and patterns:
                out["pattern"] = _anchored(str(item.pattern))
        elif type(item) in _META_NAMES:
            name = _META_NAMES[type(item)]
            out[name] = getattr(item, name)
        else:
            raise TypeError(f"schemas.event_struct cannot translate the constraint {item!r}")
    return out


def _translate(annotation: Any, metadata: list[Any], patterns: bool) -> Any:
    """A pydantic field annotation as a msgspec type (constraints become ``msgspec.Meta``)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        inner, *extra = get_args(annotation)
        return _translate(inner, [*extra, *metadata], patterns)
    if origin in (Union, types.UnionType):
        return Union[tuple(_translate(a, [], patterns) for a in get_args(annotation))]  # noqa: UP007 (run time)
    meta = _constraints(metadata, patterns)
    if origin is Literal or annotation in (str, int, float, bool, type(None)):
        return Annotated[annotation, msgspec.Meta(**meta)] if meta else annotation
    raise TypeError(f"schemas.event_struct cannot translate the type {annotation!r}")


def event_struct(name: str = "EventStruct", *, patterns: bool = True) -> type[msgspec.Struct]:
    """The model as a Struct; ``patterns=False`` leaves out the regex checks (hex hashes, country)."""
    fields: list[Any] = []
    for field, info in ApiCallEvent.model_fields.items():
        kind = _OVERRIDES.get(field) or _translate(info.annotation, list(info.metadata), patterns)
        default = info.default
        if field in DERIVED_FIELDS and default is not None:  # absent is UNSET, so prompt_text can fill it
            kind, default = Union[kind, msgspec.UnsetType], msgspec.UNSET  # noqa: UP007 (run time)
        fields.append((field, kind) if info.is_required() else (field, kind, default))
    # kw_only: required and optional fields keep the model's order; gc=False: a batch of
    # events is 50k small objects the cycle collector need not track (they hold no cycles).
    return msgspec.defstruct(name, fields, kw_only=True, gc=False)


EventStruct = event_struct()

Event = Any  # an EventStruct, or an ApiCallEvent where the model decided: same attribute names and values
_decode_struct = msgspec.json.Decoder(EventStruct).decode
_decode_list = msgspec.json.Decoder(list[EventStruct]).decode

# api_calls columns filled from the event's own fields (the table is the one list); strings stay lists.
_NUMPY = {"DateTime64(3, 'UTC')": np.int64, "UInt8": np.uint8, "Int8": np.int8, "UInt16": np.uint16,
          "UInt32": np.uint32, "UInt64": np.uint64, "Float32": np.float32}
_EVENT_COLUMNS = [(name, _NUMPY.get(kind), attrgetter(name)) for name, kind in API_CALLS.columns
                  if name not in ("kafka_partition", "kafka_offset")]
_HEX = frozenset({"prompt_hash", "prompt_simhash"})


def _decode_structs(values: Sequence[bytes], max_message_bytes: int, whole: bool
                    ) -> tuple[list[Event | None], list[int]]:
    """msgspec over every message: the Struct per message (None where it failed) and the failed rows.

    ``whole``: one decode of the batch as a JSON array. Measured only: two invalid messages
    can join into one valid element (``{"x":[1`` + ``2]}``) and shift every row after it.
    """
    # msgspec skips unknown keys without checking their UTF-8: the contract rejects such a message.
    valid_text = b"".join(values).isascii() or all(map(_is_utf8, values))
    if values and valid_text and max(map(len, values)) <= max_message_bytes:
        try:
            if whole:
                return _decode_list(b"[" + b",".join(values) + b"]"), []
            return list(map(_decode_struct, values)), []  # the usual batch: no message fails
        except Exception:  # any failure: find the failing messages one by one below
            pass
    events: list[Event | None] = []
    failed: list[int] = []
    for i, value in enumerate(values):
        try:
            if len(value) > max_message_bytes or not (valid_text or _is_utf8(value)):
                raise ValueError("oversized or not UTF-8")
            events.append(_decode_struct(value))
        except Exception:  # msgspec errors, RecursionError on deep nesting: the model words it
            events.append(None)
            failed.append(i)
    return events, failed


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode()
    except UnicodeDecodeError:
        return False
    return True


def _check_ts(events: list[Event | None], ok: list[int]) -> tuple[np.ndarray, list[int]]:
    """Event times in ms for the ok rows (RFC 3339 strings parsed and put back), and rows that fail."""
    stamps = [events[i].ts for i in ok]
    try:
        return np.fromiter(stamps, np.int64, len(ok)), []  # epoch ms: the Struct checked the range
    except (TypeError, ValueError):
        pass
    failed = []
    for pos, i in enumerate(ok):
        if isinstance(stamps[pos], str):
            try:
                ms = _rfc3339_to_ms(stamps[pos])
            except ValueError:
                ms = -1
            if not TS_MIN_MS <= ms < TS_MAX_MS:
                failed.append(i)
                ms = 0
            events[i].ts = stamps[pos] = ms
    return np.fromiter(stamps, np.int64, len(ok)), failed


def decode_json_batch_msgspec(values: Sequence[bytes], keys: Sequence[bytes | None], partitions: Sequence[int],
                              offsets: Sequence[int], *, max_message_bytes: int, max_ts_ms: int,
                              whole: bool = False) -> DecodedBatch:
    """``pipeline.decode.json_events.decode_json_batch`` (same contract) with msgspec instead of the scanner."""
    n = len(values)
    events, failed = _decode_structs(values, max_message_bytes, whole)
    ok = [i for i, e in enumerate(events) if e is not None] if failed else list(range(n))
    ts, bad_ts = _check_ts(events, ok)
    ips = [ip_entry(events[i].client_ip) for i in ok]
    bad = set(failed).union(bad_ts, (i for i, ip in zip(ok, ips, strict=True) if ip is None))
    future = set(np.asarray(ok)[ts > max_ts_ms].tolist()) - bad if ok else set()
    if not (bad or future):  # the usual batch: every message is a row
        for event, ip in zip(events, ips, strict=True):
            event.client_ip = ip[0]
        return _columns(events, ok, [ip[1] for ip in ips], partitions, offsets, [])
    verdicts: dict[int, ApiCallEvent | Rejected] = {
        i: decode_one(values[i], keys[i], partitions[i], offsets[i], max_message_bytes=max_message_bytes,
                      max_ts_ms=max_ts_ms)
        for i in sorted(bad)
    }
    entries = dict(zip(ok, ips, strict=True))
    rows: list[int] = []
    row_events: list[Event] = []
    ip_keys: list[int] = []
    rejects: list[Rejected] = []
    for i in range(n):
        event = verdicts.get(i, events[i])
        if i in future:
            rejects.append(in_future(partitions[i], offsets[i], keys[i], values[i]))
        elif isinstance(event, Rejected):
            rejects.append(event)
        else:
            if i in verdicts:  # the model's event: already normalised (and frozen)
                entry = ip_entry(event.client_ip)
            else:
                entry = entries[i]
                event.client_ip = entry[0]
            assert entry is not None  # the model accepted the address
            rows.append(i)
            row_events.append(event)
            ip_keys.append(entry[1])
    return _columns(row_events, rows, ip_keys, partitions, offsets, rejects)


_UNSET_DEFAULTS = {f: ApiCallEvent.model_fields[f].default for f in DERIVED_FIELDS
                   if ApiCallEvent.model_fields[f].default is not None}


def _derive_from_text(events: list[Event]) -> None:
    # As the model does: the text only carries the derived fields; fill the missing ones, drop it.
    for e in events:
        if e.prompt_text is not None:
            missing = [name for name in DERIVED_FIELDS if getattr(e, name) in (None, msgspec.UNSET)]
            for name, value in derive_from_prompt(e.prompt_text, missing).items():
                setattr(e, name, value)
            e.prompt_text = None
        for name, default in _UNSET_DEFAULTS.items():
            if getattr(e, name) is msgspec.UNSET:
                setattr(e, name, default)


def _column(name: str, dtype: type | None, values: list[Any]) -> object:
    if dtype is None:
        return [v or "" for v in values] if None in values else values
    if name in _HEX:
        if None in values:
            values = [v or "0" * 16 for v in values]
        # One hex decode for the column: 16 hex characters are one big-endian uint64.
        return np.frombuffer(bytes.fromhex("".join(values)), ">u8").astype(dtype)
    try:
        return np.fromiter(values, dtype, len(values))
    except TypeError:  # an absent optional field (None) somewhere in the column
        absent = RULE[name].stored_default(numeric=True)
        return np.fromiter((absent if v is None else v for v in values), dtype, len(values))


def _columns(events: list[Event], rows: list[int], ip_keys: list[int], partitions: Sequence[int],
             offsets: Sequence[int], rejects: list[Rejected]) -> DecodedBatch:
    _derive_from_text(events)
    k = len(events)
    raw: dict[str, Any] = {name: _column(name, dtype, list(map(get, events))) for name, dtype, get in _EVENT_COLUMNS}
    parts = np.asarray(partitions, np.int64)[rows] if k else np.zeros(0, np.int64)
    raw["kafka_partition"] = parts.astype(np.uint16)
    raw["kafka_offset"] = np.asarray(offsets, np.uint64)[rows] if k else np.zeros(0, np.uint64)
    return decoded_batch(lambda name, _dtype: raw[name], raw.__getitem__, np.fromiter(ip_keys, np.uint64, k), rejects)
