"""The DWB1 batch container: many events in one Kafka message, column by column.

The byte layout lives here and only here (specified in ``schemas/batch_encoding.md``):
``build_container`` writes it, ``parse_container`` reads it into NumPy views without
a Python object per event. Field semantics (types, ranges, defaults) come from the
contract, ``schemas/event.py``; ``FIELDS`` says how each field travels.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Final, NamedTuple

import numpy as np

from schemas.event_rules import RULES, FieldRule

MAGIC: Final = b"DWB1"
MAGIC_FAMILY: Final = b"DWB"  # any "DWB?" prefix is a batch container; "1" is the version we read
MAX_EVENTS: Final = 1_000_000  # per container: bounds what a header can make the decoder allocate

_HEADER = struct.Struct("<4sIHH")  # magic, n_events, n_columns, flags
_COLUMN = struct.Struct("<BBBBI")  # name_len, kind, type code, column flags, body_len
_DICT_HEAD = struct.Struct("<II")  # n_entries, blob_len

KIND_NUMERIC: Final = 0
KIND_DICT: Final = 1
HAS_PRESENCE: Final = 1  # column flag: a presence bitmap precedes the values

# Type codes: value types of numeric columns, code types of dictionary columns.
TYPE_CODES: Final[dict[int, np.dtype]] = {
    1: np.dtype("<u1"), 2: np.dtype("<u2"), 3: np.dtype("<u4"), 4: np.dtype("<u8"),
    5: np.dtype("<i1"), 6: np.dtype("<i2"), 7: np.dtype("<i4"), 8: np.dtype("<i8"),
    9: np.dtype("<f4"), 10: np.dtype("<f8"),
}
CODE_OF: Final = {dt: code for code, dt in TYPE_CODES.items()}
DICT_CODE_TYPES: Final = (5, 6, 7)  # i1, i2, i4; -1 = absent


class FieldSpec(NamedTuple):
    name: str
    kind: int  # KIND_NUMERIC or KIND_DICT
    dtype: np.dtype | None  # wire type of a numeric field; None for dictionary strings
    required: bool


# Wire types from the contract's rules (batch_encoding.md "Fields"); test_batch_format.py pins DWB1 v1.
_HEX = re.compile(r"\^\[0-9a-f\]\{(\d+)\}\$")  # fixed-width lowercase hex: travels as the number it spells


def _spec(r: FieldRule) -> FieldSpec:
    digits = _HEX.fullmatch(r.pattern or "")
    if r.type == "string" and not digits:
        return FieldSpec(r.name, KIND_DICT, None, r.required)
    lo, hi = (0, 16 ** int(digits[1]) - 1) if digits else (0, 1) if r.type == "boolean" else (r.lo, r.hi)
    if r.type == "number" or lo is None or hi is None:  # f4: api_calls stores Float32; i8: ts, bounded by its validator
        dtype = np.dtype("<f4" if r.type == "number" else "<i8")
    else:  # the narrowest integer type that holds the range (unsigned if it can be)
        dtype = next(t for t in TYPE_CODES.values() if t.kind != "f" and np.iinfo(t).min <= lo <= hi <= np.iinfo(t).max)
    return FieldSpec(r.name, KIND_NUMERIC, dtype, r.required)


# Not sent: a constant (schema_version: the magic names it) or a carrier (prompt_text: the encoder hashes it).
FIELDS: Final = tuple(_spec(r) for r in RULES if not r.carrier and (r.choices is None or len(r.choices) > 1))
FIELD_BY_NAME: Final = {f.name: f for f in FIELDS}


class BatchFormatError(ValueError):
    """The container itself is corrupt: the whole message is rejected as ``invalid_batch``."""


@dataclass(frozen=True)
class NumericWire:
    values: np.ndarray  # n values of the field's wire type (a view into the message)
    present: np.ndarray | None  # bool per event; None = every event has the field


@dataclass(frozen=True)
class DictWire:
    offsets: np.ndarray  # uint32, n_entries + 1 byte offsets into blob
    blob: bytes  # the entries' UTF-8 bytes, back to back
    codes: np.ndarray  # int per event: entry index, -1 = absent


def pad8(n: int) -> int:
    return (n + 7) & ~7


def is_batch(value: bytes) -> bool:
    """True when a message is a batch container (of any version), not a JSON event."""
    return value[:3] == MAGIC_FAMILY


def events_in(value: bytes) -> int:
    """Events a message carries, from the header alone: a container's ``n_events``, else 1.

    For batch sizing only (never validation): a corrupt header counts as 1 event.
    """
    if len(value) < _HEADER.size:
        return 1
    magic, n, _, _ = _HEADER.unpack_from(value, 0)
    return n if magic == MAGIC and 0 < n <= MAX_EVENTS else 1


# --- reading --------------------------------------------------------------------------


def parse_container(value: bytes) -> tuple[int, dict[str, NumericWire | DictWire]]:
    """Event count and the known columns of a container; raises BatchFormatError if corrupt.

    Unknown column names are skipped (forward compatibility, like unknown JSON fields).
    """
    if len(value) < _HEADER.size:
        raise BatchFormatError(f"{len(value)} bytes: shorter than the {_HEADER.size}-byte header")
    magic, n, n_columns, flags = _HEADER.unpack_from(value, 0)
    if magic != MAGIC:
        raise BatchFormatError(f"unsupported batch container version {magic!r} (this reader knows {MAGIC!r})")
    if flags:
        raise BatchFormatError(f"unknown header flags {flags:#06x}")
    if n > MAX_EVENTS:
        raise BatchFormatError(f"{n} events in one container (at most {MAX_EVENTS})")
    buf = memoryview(value)
    pos = _HEADER.size
    columns: dict[str, NumericWire | DictWire] = {}
    seen: set[str] = set()
    for _ in range(n_columns):
        if pos + _COLUMN.size > len(value):
            raise BatchFormatError(f"column header at byte {pos} runs past the end")
        name_len, kind, type_code, col_flags, body_len = _COLUMN.unpack_from(value, pos)
        name_at = pos + _COLUMN.size
        body_at = name_at + pad8(name_len)
        end = body_at + body_len
        if end > len(value):
            raise BatchFormatError(f"column at byte {pos} runs past the end ({end} > {len(value)})")
        try:
            name = bytes(buf[name_at:name_at + name_len]).decode("ascii")
        except UnicodeDecodeError:
            raise BatchFormatError(f"column name at byte {name_at} is not ASCII") from None
        if name in seen:
            raise BatchFormatError(f"column {name!r} appears twice")
        seen.add(name)
        spec = FIELD_BY_NAME.get(name)
        if spec is not None:
            body = buf[body_at:end]
            if spec.kind != kind:
                raise BatchFormatError(f"column {name!r}: kind {kind}, expected {spec.kind}")
            if kind == KIND_NUMERIC:
                columns[name] = _numeric(name, spec, type_code, col_flags, body, n)
            else:
                columns[name] = _dictionary(name, type_code, col_flags, body, n)
        pos = end
    if pos != len(value):
        raise BatchFormatError(f"{len(value) - pos} bytes after the last column")
    return n, columns


def _numeric(name: str, spec: FieldSpec, type_code: int, col_flags: int, body: memoryview, n: int) -> NumericWire:
    dtype = TYPE_CODES.get(type_code)
    if dtype != spec.dtype:
        raise BatchFormatError(f"column {name!r}: type code {type_code}, expected {CODE_OF[spec.dtype]}")
    if col_flags & ~HAS_PRESENCE:
        raise BatchFormatError(f"column {name!r}: unknown column flags {col_flags:#04x}")
    bitmap_len = pad8((n + 7) // 8) if col_flags & HAS_PRESENCE else 0
    values_len = n * dtype.itemsize
    if len(body) != bitmap_len + pad8(values_len):
        raise BatchFormatError(f"column {name!r}: body of {len(body)} bytes, expected {bitmap_len + pad8(values_len)}")
    present = None
    if bitmap_len:
        bits = np.frombuffer(body, np.uint8, (n + 7) // 8)
        present = np.unpackbits(bits, count=n, bitorder="little").view(bool)
    return NumericWire(np.frombuffer(body, dtype, n, bitmap_len), present)


def _dictionary(name: str, type_code: int, col_flags: int, body: memoryview, n: int) -> DictWire:
    if type_code not in DICT_CODE_TYPES:
        raise BatchFormatError(f"column {name!r}: code type {type_code}, expected one of {DICT_CODE_TYPES}")
    if col_flags:
        raise BatchFormatError(f"column {name!r}: dictionary columns take no flags ({col_flags:#04x})")
    if len(body) < _DICT_HEAD.size:
        raise BatchFormatError(f"column {name!r}: dictionary header missing")
    n_entries, blob_len = _DICT_HEAD.unpack_from(body, 0)
    offsets_at = _DICT_HEAD.size
    blob_at = offsets_at + pad8(4 * (n_entries + 1))
    codes_at = blob_at + pad8(blob_len)
    dtype = TYPE_CODES[type_code]
    expected = codes_at + pad8(n * dtype.itemsize)
    if len(body) != expected:
        raise BatchFormatError(f"column {name!r}: body of {len(body)} bytes, expected {expected}")
    offsets = np.frombuffer(body, "<u4", n_entries + 1, offsets_at)
    ordered = not n_entries or bool(np.all(np.diff(offsets.astype(np.int64)) >= 0))
    if offsets[0] != 0 or offsets[-1] != blob_len or not ordered:
        raise BatchFormatError(f"column {name!r}: dictionary offsets are not 0..{blob_len} in order")
    codes = np.frombuffer(body, dtype, n, codes_at)
    if n and (int(codes.min()) < -1 or int(codes.max()) >= n_entries):
        raise BatchFormatError(f"column {name!r}: codes outside -1..{n_entries - 1}")
    return DictWire(offsets, bytes(body[blob_at:blob_at + blob_len]), codes)


# --- writing --------------------------------------------------------------------------


def _pad(data: bytes) -> bytes:
    return data + b"\0" * (pad8(len(data)) - len(data))


def _column(name: str, kind: int, type_code: int, col_flags: int, body: bytes) -> bytes:
    raw = name.encode("ascii")
    return _COLUMN.pack(len(raw), kind, type_code, col_flags, len(body)) + _pad(raw) + body


def numeric_column(name: str, values: np.ndarray, present: np.ndarray | None) -> bytes:
    """One numeric column; ``values`` already has the field's wire type."""
    spec = FIELD_BY_NAME[name]
    assert spec.dtype is not None and values.dtype == spec.dtype, (name, values.dtype)
    body = b""
    flags = 0
    if present is not None:
        flags = HAS_PRESENCE
        body = _pad(np.packbits(present.astype(bool), bitorder="little").tobytes())
    return _column(name, KIND_NUMERIC, CODE_OF[spec.dtype], flags, body + _pad(values.tobytes()))


def code_dtype(n_entries: int) -> np.dtype:
    """The narrowest signed code type that holds every entry index (and -1)."""
    for code in DICT_CODE_TYPES:
        if n_entries <= np.iinfo(TYPE_CODES[code]).max + 1:
            return TYPE_CODES[code]
    raise ValueError(f"{n_entries} dictionary entries do not fit int32 codes")


def dict_column(name: str, entries: list[bytes], codes: np.ndarray) -> bytes:
    """One dictionary column: UTF-8 entries and one code per event (-1 = absent)."""
    lengths = np.fromiter((len(e) for e in entries), np.int64, len(entries))
    offsets = np.zeros(len(entries) + 1, "<u4")
    np.cumsum(lengths, out=offsets[1:])
    blob = b"".join(entries)
    dtype = code_dtype(len(entries))
    body = (_DICT_HEAD.pack(len(entries), len(blob)) + _pad(offsets.tobytes()) + _pad(blob)
            + _pad(codes.astype(dtype).tobytes()))
    return _column(name, KIND_DICT, CODE_OF[dtype], 0, body)


def build_container(n: int, columns: list[bytes]) -> bytes:
    """Header plus already-built columns (``numeric_column`` / ``dict_column``)."""
    if n > MAX_EVENTS:
        raise ValueError(f"{n} events in one container (at most {MAX_EVENTS})")
    return _HEADER.pack(MAGIC, n, len(columns), 0) + b"".join(columns)
