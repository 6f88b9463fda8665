"""Encode many events into one DWB1 batch container (``schemas/batch_encoding.md``).

Input is events (dicts shaped like the JSON contract), validated contract models,
or columns (one sequence or array per field). Events are checked on the producer
side with the same rules the pipeline applies (strict JSON types, then
``pipeline.decode.batch_rules``), so a gateway learns about a bad event when it
sends it, not from the dead-letter topic. ``prompt_text`` never leaves the
producer: it becomes ``prompt_hash`` / ``prompt_simhash`` / ``topic`` /
``elicits_reasoning`` where those are missing (``schemas.prompt_derive``).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Iterable, Mapping, Sequence
from itertools import repeat
from typing import Any

import numpy as np

from pipeline.decode.batch_format import FIELDS, NumericWire, build_container, dict_column, numeric_column
from pipeline.decode.batch_rules import BOOLEANS, FLOATS, HASHES, Columns, StrColumn, Violations, find_violations
from pipeline.decode.rejects import SCHEMA
from schemas.event import ApiCallEvent, _rfc3339_to_ms
from schemas.event_rules import RULE, message
from schemas.prompt_derive import DERIVED_FIELDS, derive_from_prompt

_HEX_TEXT = re.compile(r"[0-9a-f]*")  # all hashes at once; each is then checked against its pattern
_NAMES = tuple(f.name for f in FIELDS)


class InvalidEventError(ValueError):
    """An event breaks the contract (or cannot be encoded); names the event, reason and field."""

    def __init__(self, index: int, reason: str, field: str, detail: str, invalid_events: int = 1) -> None:
        more = f" ({invalid_events} invalid events in this batch)" if invalid_events > 1 else ""
        super().__init__(f"event {index}: {detail}{more}")
        self.index = index
        self.reason = reason
        self.field = field
        self.detail = detail
        self.invalid_events = invalid_events


# --- events (dicts or models) -> columns -----------------------------------------------


def columns_from_events(events: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """One list per contract field (None where an event lacks it); unknown keys are ignored."""
    names = (*_NAMES, "prompt_text", "schema_version")
    if set(map(type, events)) <= {dict}:  # the usual case: C-level passes, no Python loop per event
        return {name: list(map(dict.get, events, repeat(name))) for name in names}
    for i, e in enumerate(events):
        if not isinstance(e, Mapping):
            raise InvalidEventError(i, SCHEMA, "", "the event is not an object (mapping)")
    return {name: [e.get(name) for e in events] for name in names}


def columns_from_models(models: Sequence[ApiCallEvent]) -> dict[str, list[Any]]:
    """Columns of validated contract models (their values are normalised already)."""
    return {name: [getattr(m, name) for m in models] for name in _NAMES}


def validate_event(event: Mapping[str, Any]) -> ApiCallEvent:
    """The contract model of one event; raises InvalidEventError naming the field."""
    from pydantic import ValidationError

    try:
        return ApiCallEvent.model_validate(event, strict=True)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        field = ".".join(str(p) for p in err["loc"])
        raise InvalidEventError(0, SCHEMA, field, f"{field}: {err['msg']}") from None


# --- columns -> wire columns, with the type checks JSON parsing would have done ---------------


class _Problems:
    """Type and range problems found while converting columns (always fatal: not encodable)."""

    def __init__(self, n: int) -> None:
        self.v = Violations(n, [])

    def add(self, field: str, message: str, mask: np.ndarray) -> None:
        self.v.add(SCHEMA, field, message, mask)


def _mask(n: int, rows: Iterable[int]) -> np.ndarray:
    mask = np.zeros(n, bool)
    mask[list(rows)] = True
    return mask


def _types(values: Sequence[Any]) -> set[type]:
    return set(map(type, values))  # one C-level pass; per-value checks only when something is off


def _present(values: Sequence[Any], n: int) -> np.ndarray:
    return np.fromiter(map(operator.is_not, values, repeat(None)), bool, n)


def _strings(name: str, values: Sequence[Any], n: int, problems: _Problems) -> StrColumn:
    index = dict.fromkeys(values)  # distinct values in first-seen order, without a Python loop per value
    index.pop(None, None)
    for code, value in enumerate(index):
        index[value] = code
    index[None] = -1
    codes = np.fromiter(map(index.__getitem__, values), np.intp, n)
    del index[None]
    entries = list(index)
    bad = [i for i, e in enumerate(entries) if type(e) is not str]  # checked once per distinct value
    if bad:
        problems.add(name, message(name, "str_type"), np.isin(codes, bad))
        entries = [e if type(e) is str else "" for e in entries]
    return StrColumn.from_strings(entries, codes)


def _beyond(name: str, above: bool) -> str:
    """The contract's message for an integer beyond its field's range (above or below it).

    Every wire type holds its field's contract range, so a value that does not fit
    the wire breaks the contract too, and is reported as the model would report it.
    """
    if RULE[name].validator == "_parse_ts":
        return message(name, "ts_range")
    return message(name, "le" if above else "ge")


def _ints(name: str, values: Sequence[Any] | np.ndarray, n: int, problems: _Problems) -> NumericWire:
    if isinstance(values, np.ndarray):
        if values.dtype.kind not in "iu":
            raise TypeError(f"column {name!r}: expected an integer array, got {values.dtype}")
        if values.dtype == np.uint64 and len(values) and int(values.max()) >= 2**63:
            huge = values >= 2**63
            problems.add(name, _beyond(name, True), huge)
            values = np.where(huge, 0, values)  # reported once, not again as negative int64
        return NumericWire(values.astype(np.int64), None)
    types = _types(values)
    present = None
    if types - {int}:
        present = _present(values, n)
        if types - {int, type(None)}:  # strict: no bool, no "1"
            wrong = [i for i, v in enumerate(values) if v is not None and type(v) is not int]
            problems.add(name, message(name, "int_type"), _mask(n, wrong))
        values = [v if type(v) is int else 0 for v in values]
    try:
        array = np.array(values, np.int64) if n else np.zeros(0, np.int64)
    except OverflowError:  # beyond int64: out of every field's range
        above = [i for i, v in enumerate(values) if v >= 2**63]
        below = [i for i, v in enumerate(values) if v < -(2**63)]
        problems.add(name, _beyond(name, True), _mask(n, above))
        problems.add(name, _beyond(name, False), _mask(n, below))
        out = {*above, *below}
        array = np.array([0 if i in out else v for i, v in enumerate(values)], np.int64)
    return NumericWire(array, None if present is None or present.all() else present)


def _bools(name: str, values: Sequence[Any] | np.ndarray, n: int, problems: _Problems) -> NumericWire:
    if isinstance(values, np.ndarray):
        if values.dtype != bool:
            raise TypeError(f"column {name!r}: expected a bool array, got {values.dtype}")
        return NumericWire(values.astype(np.uint8), None)
    types = _types(values)
    if types - {bool, type(None)}:
        wrong = [i for i, v in enumerate(values) if v is not None and type(v) is not bool]
        problems.add(name, message(name, "bool_type"), _mask(n, wrong))
    array = np.fromiter(map(operator.is_, values, repeat(True)), np.uint8, n)
    present = _present(values, n) if type(None) in types else None
    return NumericWire(array, None if present is None or present.all() else present)


def _floats(name: str, values: Sequence[Any] | np.ndarray, n: int, problems: _Problems) -> NumericWire:
    if isinstance(values, np.ndarray):
        if values.dtype.kind not in "iuf":
            raise TypeError(f"column {name!r}: expected a float array, got {values.dtype}")
        array = values.astype(np.float64)
        present = ~np.isnan(array)  # NaN = absent, as in the api_calls table
        return NumericWire(np.where(present, array, 0.0), None if present.all() else present)
    types = _types(values)
    present = _present(values, n) if type(None) in types else None
    if types - {int, float, type(None)}:
        wrong = [i for i, v in enumerate(values) if v is not None and type(v) not in (int, float)]
        problems.add(name, message(name, "float_type"), _mask(n, wrong))
        values = [v if type(v) in (int, float) else None for v in values]
    if present is not None:
        values = [0.0 if v is None else v for v in values]
    array = np.array(values, np.float64) if n else np.zeros(0, np.float64)
    return NumericWire(array, None if present is None or present.all() else present)


def _hashes(name: str, values: Sequence[Any] | np.ndarray, n: int, problems: _Problems) -> NumericWire:
    if isinstance(values, np.ndarray):
        if values.dtype.kind not in "iu":
            raise TypeError(f"column {name!r}: expected a uint64 array or hex strings, got {values.dtype}")
        return NumericWire(values.astype(np.uint64), None)
    present = _present(values, n)
    if not present.all():
        values = ["0" * 16 if v is None else v for v in values]
    text = "".join(values) if _types(values) == {str} else ""
    if len(text) != 16 * n or _HEX_TEXT.fullmatch(text) is None:  # one regex over all, per value only if needed
        pattern = re.compile(RULE[name].pattern or "")
        wrong = [i for i, v in enumerate(values) if not (type(v) is str and pattern.match(v))]
        problems.add(name, message(name, "pattern"), _mask(n, wrong) & present)
        text = "".join(v if type(v) is str and pattern.match(v) else "0" * 16 for v in values)
    array = np.frombuffer(bytes.fromhex(text), ">u8").astype(np.uint64)
    return NumericWire(array, None if present.all() else present)


def _ts(values: Sequence[Any] | np.ndarray, n: int, problems: _Problems) -> NumericWire:
    if isinstance(values, np.ndarray):
        return _ints("ts", values, n, problems)
    converted: list[Any] = list(values)
    bad: list[int] = []
    for i, v in enumerate(values):
        if type(v) is str:
            try:
                converted[i] = _rfc3339_to_ms(v)
            except ValueError:
                bad.append(i)
                converted[i] = 0
    if bad:
        problems.add("ts", message("ts", "ts_text"), _mask(n, bad))
    return _ints("ts", converted, n, problems)


def _derive_from_prompt(columns: Mapping[str, Any], n: int) -> dict[str, Any]:
    """Fill fields missing (None) from prompt_text (which is then dropped), like the contract model."""
    texts = columns.get("prompt_text")
    out = {k: v for k, v in columns.items() if k != "prompt_text"}
    if texts is None or all(t is None for t in texts):
        return out
    # An array column has no None: nothing of it is missing.
    lists = {f: list(out[f]) if out.get(f) is not None else [None] * n
             for f in DERIVED_FIELDS if not isinstance(out.get(f), np.ndarray)}
    for i, text in enumerate(texts):
        if type(text) is str:
            missing = [f for f, col in lists.items() if col[i] is None]
            for name, value in derive_from_prompt(text, missing).items():
                lists[name][i] = value
    out.update(lists)
    return out


def _to_wire(columns: Mapping[str, Any], n: int, problems: _Problems) -> Columns:
    wire: Columns = {}
    for spec in FIELDS:
        values = columns.get(spec.name)
        if values is None:
            continue
        if len(values) != n:
            raise ValueError(f"column {spec.name!r} has {len(values)} values, expected {n}")
        if spec.dtype is None:
            wire[spec.name] = _strings(spec.name, values, n, problems)
        elif spec.name == "ts":
            wire[spec.name] = _ts(values, n, problems)
        elif spec.name in HASHES:
            wire[spec.name] = _hashes(spec.name, values, n, problems)
        elif spec.name in FLOATS:
            wire[spec.name] = _floats(spec.name, values, n, problems)
        elif spec.name in BOOLEANS:
            wire[spec.name] = _bools(spec.name, values, n, problems)
        else:
            wire[spec.name] = _ints(spec.name, values, n, problems)
    return wire


def _wire_ranges(wire: Columns, problems: _Problems) -> None:
    """Integers must fit their wire type (``ts`` is judged by its own range rule, in ``find_violations``)."""
    for spec in FIELDS:
        col = wire.get(spec.name)
        if not isinstance(col, NumericWire) or spec.dtype is None or spec.dtype.kind not in "iu":
            continue
        if spec.name in HASHES or spec.name in BOOLEANS:
            continue  # every uint64 is a valid hash; booleans were type-checked
        info = np.iinfo(spec.dtype)
        live = col.values if col.present is None else np.where(col.present, col.values, 0)
        if spec.name != "ts":
            problems.add(spec.name, _beyond(spec.name, False), live < info.min)
            problems.add(spec.name, _beyond(spec.name, True), live > info.max)


def _schema_version(columns: Mapping[str, Any], n: int, problems: _Problems) -> None:
    versions = columns.get("schema_version")
    if versions is not None:
        allowed = RULE["schema_version"].choices or ()
        bad = [i for i, v in enumerate(versions) if v is not None and not (type(v) is int and v in allowed)]
        if bad:
            problems.add("schema_version", message("schema_version", "literal"), _mask(n, bad))


def _raise_first(v: Violations) -> None:
    bad = np.flatnonzero(v.bad)
    if len(bad):
        reason, field, detail = v.describe(bad[:1])[0]
        raise InvalidEventError(int(bad[0]), reason, field, detail, len(bad))


def encode_wire(n: int, wire: Columns) -> bytes:
    """Wire columns (from ``columns_to_wire`` / ``take_rows``) -> one container, no further checks."""
    parts = []
    for spec in FIELDS:
        col = wire.get(spec.name)
        if isinstance(col, StrColumn):
            try:
                entries = [e.encode() for e in col.entries]
            except UnicodeEncodeError as exc:  # lone surrogates: not representable as UTF-8
                raise InvalidEventError(0, SCHEMA, spec.name, f"{spec.name}: not encodable as UTF-8: {exc}") from None
            parts.append(dict_column(spec.name, entries, col.codes))
        elif col is not None:
            assert spec.dtype is not None
            values = col.values if col.present is None else np.where(col.present, col.values, 0)
            parts.append(numeric_column(spec.name, values.astype(spec.dtype), col.present))
    return build_container(n, parts)


def columns_to_wire(columns: Mapping[str, Any], *, validate: bool = True) -> tuple[int, Columns]:
    """Columns (one sequence or array per field, None = absent) -> (event count, checked wire columns).

    Raises InvalidEventError for the first event that cannot be encoded (wrong JSON
    type, beyond its wire type) and, with ``validate``, for the first that breaks the
    contract. ``validate=False`` is for tests of the pipeline's reject path.
    """
    lengths = {len(v) for v in columns.values() if v is not None}
    if len(lengths) > 1:
        raise ValueError(f"columns differ in length: {sorted(lengths)}")
    n = lengths.pop() if lengths else 0
    columns = _derive_from_prompt(columns, n)
    problems = _Problems(n)
    _schema_version(columns, n, problems)
    wire = _to_wire(columns, n, problems)
    _wire_ranges(wire, problems)
    _raise_first(problems.v)
    if validate:
        _raise_first(find_violations(n, wire))
    return n, wire


def take_rows(wire: Columns, rows: np.ndarray) -> Columns:
    """The given events of wire columns, each string dictionary cut down to the entries they use."""
    out: Columns = {}
    for name, col in wire.items():
        if isinstance(col, StrColumn):
            used, inverse = np.unique(col.codes[rows], return_inverse=True)
            absent = len(used) > 0 and used[0] < 0
            keep = used[1:] if absent else used
            codes = inverse.astype(np.intp) - (1 if absent else 0)
            entries = [col.entries[i] for i in keep.tolist()]
            out[name] = StrColumn(entries, codes, col.bad_utf8[keep], col.char_len[keep])
        else:
            out[name] = NumericWire(col.values[rows], None if col.present is None else col.present[rows])
    return out


def encode_columns(columns: Mapping[str, Any], *, validate: bool = True) -> bytes:
    """Columns (one sequence or array per field, None = absent) -> one container (see ``columns_to_wire``)."""
    return encode_wire(*columns_to_wire(columns, validate=validate))


def encode_events(events: Sequence[Mapping[str, Any]], *, validate: bool = True) -> bytes:
    """Event dicts (the JSON contract's shape) -> one container."""
    return encode_columns(columns_from_events(events), validate=validate)


def encode_models(models: Sequence[ApiCallEvent]) -> bytes:
    """Validated contract models -> one container (no second validation)."""
    return encode_columns(columns_from_models(models), validate=False)
