"""The event contract's rules, vectorised over the columns of a batch.

Same rules as the pydantic model ``schemas.event.ApiCallEvent`` (ranges, enums,
lengths, pattern, IP address, ts range), applied per column instead of per event:
string rules run once per distinct string (dictionary entry) and reach events
through their codes, numeric rules are NumPy comparisons. The decoder uses this
on every batch container; the encoder uses it to refuse invalid events before
they reach Kafka. ``tests/pipeline/decode/test_batched.py`` checks that each rule
rejects the same events, with the same reason and field, as the JSON path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from pipeline.decode.batch_format import FIELD_BY_NAME, FIELDS, NumericWire
from pipeline.decode.client_ip import ip_table
from pipeline.decode.rejects import INVALID_UTF8, SCHEMA
from schemas.event import TS_MAX_MS, TS_MIN_MS
from schemas.event_rules import RULE, RULES, message

_FIELD_ORDER = {r.name: i for i, r in enumerate(RULES)}


def _beyond_wire(name: str, lo: float | None, hi: float | None) -> tuple[float | None, float | None]:
    """The bounds an integer wire type does not enforce already (None: nothing to check)."""
    dtype = FIELD_BY_NAME[name].dtype
    if dtype is not None and dtype.kind in "iu":
        info = np.iinfo(dtype)
        lo = None if lo is None or lo <= info.min else lo
        hi = None if hi is None or hi >= info.max else hi
    return lo, hi


_CARRIED = [r for r in RULES if r.name in FIELD_BY_NAME]  # the fields a container carries
# (min chars, max chars) of string fields; None = no bound on that side.
STRING_LENGTHS: dict[str, tuple[int, int | None]] = {
    r.name: (r.lo or 0, r.hi) for r in _CARRIED if r.type == "string" and (r.lo or r.hi)}  # type: ignore[misc]
# (lower, upper) of numeric fields where the contract is narrower than the wire type.
NUMERIC_RANGES: dict[str, tuple[float | None, float | None]] = {
    r.name: bounds for r in _CARRIED if r.type in ("integer", "number") and r.validator is None
    and (bounds := _beyond_wire(r.name, r.lo, r.hi)) != (None, None)}
BOOLEANS = tuple(r.name for r in _CARRIED if r.type == "boolean")  # sent as u1 0/1
FLOATS = tuple(r.name for r in _CARRIED if r.type == "number")
PATTERNS = {r.name: re.compile(r.pattern) for r in _CARRIED if r.type == "string" and r.pattern}
HASHES = tuple(name for name in PATTERNS if FIELD_BY_NAME[name].dtype is not None)  # hex text, sent as uint64


@dataclass(frozen=True)
class StrColumn:
    """A dictionary-encoded string column: each distinct string once, a code per event."""

    entries: list[str]  # decoded entries (invalid UTF-8 shown with U+FFFD)
    codes: np.ndarray  # intp per event: entry index, -1 = absent
    bad_utf8: np.ndarray  # bool per entry
    char_len: np.ndarray  # int64 per entry: length in characters, as the contract counts

    @staticmethod
    def from_strings(entries: list[str], codes: np.ndarray) -> StrColumn:
        lengths = np.fromiter((len(s) for s in entries), np.int64, len(entries))
        return StrColumn(entries, codes, np.zeros(len(entries), bool), lengths)

    @cached_property
    def ip_table(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """``ip_table(entries)``, computed once: both the checks and the columns need it."""
        return ip_table(self.entries)


Columns = dict[str, StrColumn | NumericWire]


# --- violations -------------------------------------------------------------------------


@dataclass
class Violations:
    """Per event: whether it breaks the contract, and the first broken rule (contract field order)."""

    n: int
    rules: list[tuple[int, str, str, str, np.ndarray]]  # (field order, reason, field, message, mask)

    def add(self, reason: str, field: str, message: str, mask: np.ndarray) -> None:
        if mask.any():
            self.rules.append((_FIELD_ORDER[field], reason, field, message, mask))

    @property
    def bad(self) -> np.ndarray:
        out = np.zeros(self.n, bool)
        for *_, mask in self.rules:
            out |= mask
        return out

    def describe(self, rows: np.ndarray) -> list[tuple[str, str, str]]:
        """(reason, field, detail) of each given bad event, in the JSON decoder's style."""
        if not len(rows):
            return []
        self.rules.sort(key=lambda r: r[0])
        hits = np.stack([mask[rows] for *_, mask in self.rules])
        first = hits.argmax(axis=0).tolist()
        counts = hits.sum(axis=0).tolist()
        out = []
        for rule, count in zip(first, counts, strict=True):
            _, reason, field, message, _ = self.rules[rule]
            more = f" (+{count - 1} more)" if count > 1 else ""
            out.append((reason, field, f"{field}: {message}{more}"))
        return out


def _entry_mask(column: StrColumn, bad_entries: np.ndarray) -> np.ndarray:
    """Events whose (present) entry is flagged in ``bad_entries``."""
    if not bad_entries.any():
        return np.zeros(len(column.codes), bool)
    codes = column.codes
    return (codes >= 0) & bad_entries[np.maximum(codes, 0)]


def _check_string(v: Violations, name: str, column: StrColumn | None, required: bool) -> None:
    if column is None:
        if required:
            v.add(SCHEMA, name, message(name, "missing"), np.ones(v.n, bool))
        return
    if required:
        v.add(SCHEMA, name, message(name, "missing"), column.codes < 0)
    v.add(INVALID_UTF8, name, "not valid UTF-8", _entry_mask(column, column.bad_utf8))
    low, high = STRING_LENGTHS.get(name, (0, None))
    if low:
        v.add(SCHEMA, name, message(name, "too_short"), _entry_mask(column, column.char_len < low))
    if high is not None:
        v.add(SCHEMA, name, message(name, "too_long"), _entry_mask(column, column.char_len > high))
    rule = RULE[name]
    entries = column.entries
    if rule.choices is not None:
        bad = np.fromiter((e not in rule.choices for e in entries), bool, len(entries))
        v.add(SCHEMA, name, message(name, "literal"), _entry_mask(column, bad))
    elif name in PATTERNS:
        bad = np.fromiter((PATTERNS[name].match(e) is None for e in entries), bool, len(entries))
        v.add(SCHEMA, name, message(name, "pattern"), _entry_mask(column, bad))
    elif rule.validator == "_check_ip":
        _, _, bad = column.ip_table
        v.add(SCHEMA, name, message(name, "ip"), _entry_mask(column, bad))


def _check_number(v: Violations, name: str, column: NumericWire | None, required: bool) -> None:
    if column is None:
        if required:
            v.add(SCHEMA, name, message(name, "missing"), np.ones(v.n, bool))
        return
    present = column.present
    if required and present is not None:
        v.add(SCHEMA, name, message(name, "missing"), ~present)

    def check(mask: np.ndarray, message: str) -> None:
        v.add(SCHEMA, name, message, mask if present is None else mask & present)

    values = column.values
    if name in BOOLEANS:
        check(values > 1, message(name, "bool_type"))
    elif RULE[name].validator == "_parse_ts":
        check((values < TS_MIN_MS) | (values >= TS_MAX_MS), message(name, "ts_range"))
    finite = np.isfinite(values) if name in FLOATS else None
    if finite is not None:
        check(~finite, message(name, "finite"))
    low, high = NUMERIC_RANGES.get(name, (None, None))
    if low is not None:
        below = values < low
        check(below if finite is None else below & finite, message(name, "ge"))
    if high is not None:
        above = values > high
        check(above if finite is None else above & finite, message(name, "le"))


def find_violations(n: int, columns: Columns) -> Violations:
    """Every contract rule over every event of a batch."""
    v = Violations(n, [])
    with np.errstate(invalid="ignore"):  # NaN comparisons are caught by the finite check
        for spec in FIELDS:
            column = columns.get(spec.name)
            if isinstance(column, StrColumn) or (column is None and spec.dtype is None):
                _check_string(v, spec.name, column, spec.required)
            else:
                _check_number(v, spec.name, column, spec.required)
    return v
