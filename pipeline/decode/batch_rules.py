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

from pipeline.decode.batch_format import BOOL_FIELDS, FIELDS, NumericWire
from pipeline.decode.client_ip import ip_table
from pipeline.decode.rejects import INVALID_UTF8, SCHEMA
from schemas.event import NETWORK_TYPES, TS_MAX_MS, TS_MIN_MS

_COUNTRY = re.compile(r"^[A-Z]{2}$")
_NETWORK_SET = frozenset(NETWORK_TYPES)
_NETWORK_MSG = "Input should be " + ", ".join(f"'{t}'" for t in NETWORK_TYPES[:-1]) + f" or '{NETWORK_TYPES[-1]}'"
_FIELD_ORDER = {"schema_version": -1, **{f.name: i for i, f in enumerate(FIELDS)}}

# (min chars, max chars) of string fields; None = no bound on that side.
STRING_LENGTHS: dict[str, tuple[int, int | None]] = {
    "event_id": (1, 64), "account_id": (1, 128), "api_key_id": (1, 128), "user_agent": (0, 512),
    "endpoint": (1, 256), "model": (1, 128), "topic": (0, 64), "payment_fingerprint": (0, 128),
}
# (lower, upper) of numeric fields whose wire type is wider than the contract allows.
NUMERIC_RANGES: dict[str, tuple[float | None, float | None]] = {
    "status": (100, 599), "n": (1, None), "max_tokens": (1, None), "top_logprobs": (None, 20),
    "temperature": (0.0, 2.0), "top_p": (0.0, 1.0),
}
BOOLEANS = BOOL_FIELDS
FLOATS = ("temperature", "top_p")


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
            v.add(SCHEMA, name, "Field required", np.ones(v.n, bool))
        return
    if required:
        v.add(SCHEMA, name, "Field required", column.codes < 0)
    v.add(INVALID_UTF8, name, "not valid UTF-8", _entry_mask(column, column.bad_utf8))
    low, high = STRING_LENGTHS.get(name, (0, None))
    if low:
        v.add(SCHEMA, name, f"String should have at least {low} character", _entry_mask(column, column.char_len < low))
    if high is not None:
        v.add(SCHEMA, name, f"String should have at most {high} characters",
              _entry_mask(column, column.char_len > high))
    if name == "network_type":
        bad = np.fromiter((e not in _NETWORK_SET for e in column.entries), bool, len(column.entries))
        v.add(SCHEMA, name, _NETWORK_MSG, _entry_mask(column, bad))
    elif name == "country":
        bad = np.fromiter((_COUNTRY.match(e) is None for e in column.entries), bool, len(column.entries))
        v.add(SCHEMA, name, f"String should match pattern '{_COUNTRY.pattern}'", _entry_mask(column, bad))
    elif name == "client_ip":
        _, _, bad = column.ip_table
        v.add(SCHEMA, name, "Value error, not an IPv4 or IPv6 address", _entry_mask(column, bad))


def _check_number(v: Violations, name: str, column: NumericWire | None, required: bool) -> None:
    if column is None:
        if required:
            v.add(SCHEMA, name, "Field required", np.ones(v.n, bool))
        return
    present = column.present
    if required and present is not None:
        v.add(SCHEMA, name, "Field required", ~present)

    def check(mask: np.ndarray, message: str) -> None:
        v.add(SCHEMA, name, message, mask if present is None else mask & present)

    values = column.values
    if name in BOOLEANS:
        check(values > 1, "Input should be a valid boolean")
    elif name == "ts":
        check((values < TS_MIN_MS) | (values >= TS_MAX_MS), "Value error, event time outside 2000-01-01..2100-01-01")
    finite = np.isfinite(values) if name in FLOATS else None
    if finite is not None:
        check(~finite, "Input should be a finite number")
    low, high = NUMERIC_RANGES.get(name, (None, None))
    if low is not None:
        below = values < low
        check(below if finite is None else below & finite, f"Input should be greater than or equal to {low}")
    if high is not None:
        above = values > high
        check(above if finite is None else above & finite, f"Input should be less than or equal to {high}")


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
