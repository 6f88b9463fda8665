"""Bad input of every kind: each message becomes exactly one row or one reject with a reason, never an exception.

Property-based (hypothesis, derandomized so every run checks the same cases):
arbitrary bytes, arbitrary JSON, and valid events broken one field at a time —
wrong types, missing fields, out-of-range numbers, far past or future times,
huge or odd strings, lone surrogates, duplicate keys, deep nesting — plus
oversized messages and resent copies.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.decode.json_events import decode_json_batch
from pipeline.decode.rejects import INVALID_UTF8, OVERSIZED, REASONS
from schemas.event import TS_MAX_MS, TS_MIN_MS, ApiCallEvent
from tests.support.events import EXAMPLE

MAX_BYTES = 2048
NOW_MS = 1_780_000_000_000  # "the wall clock" for these tests; events may be up to a day ahead
MAX_TS_MS = NOW_MS + 86_400_000
PROPERTY = settings(max_examples=150, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

json_scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | \
    st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=40)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4) |
                           st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)
# Raw JSON text that orjson cannot write: non-finite numbers, lone surrogates, huge numbers.
odd_literals = st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b'"\\ud800"', b'"\\udfff x"', b"1e400",
                                b"-0", b"1.0", b"9" * 40, b'"\\u0000"', b"[]", b"{}", b'"' + b"x" * 3000 + b'"'])
FIELDS = sorted(EXAMPLE)


def dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()  # unlike orjson, writes integers of any size


@st.composite
def broken_events(draw: st.DrawFn) -> bytes:
    """A valid event with one field removed, replaced by any JSON value or an odd literal, or its ts moved."""
    event: dict[str, Any] = dict(EXAMPLE)
    event["event_id"] = draw(st.text(min_size=1, max_size=8))
    field = draw(st.sampled_from(FIELDS))
    how = draw(st.sampled_from(["drop", "value", "literal", "ts", "duplicate_key", "keep"]))
    if how == "drop":
        event.pop(field)
    elif how == "value":
        event[field] = draw(json_values)
    elif how == "ts":
        event["ts"] = draw(st.integers(-(2**63), 2**63 - 1) | st.sampled_from(
            [TS_MIN_MS - 1, TS_MIN_MS, TS_MAX_MS - 1, TS_MAX_MS, MAX_TS_MS, MAX_TS_MS + 1, 0, -1]))
    text = dumps(event)
    if how == "literal":
        event[field] = "__LITERAL__"
        text = dumps(event).replace(b'"__LITERAL__"', draw(odd_literals))
    elif how == "duplicate_key":
        text = text[:-1] + b', "' + field.encode() + b'": ' + dumps(draw(json_values)) + b"}"
    return text


messages = st.one_of(
    st.binary(max_size=300),
    json_values.map(dumps),
    broken_events(),
    st.integers(1, 60).map(lambda depth: b"[" * depth * 100 + b"]" * depth * 100),
    st.integers(MAX_BYTES + 1, MAX_BYTES + 500).map(lambda n: orjson.dumps({**EXAMPLE, "user_agent": "u" * n})),
)


def decode(values: list[bytes]) -> Any:
    n = len(values)
    partitions = [i % 3 for i in range(n)]
    offsets = [1000 + i for i in range(n)]
    return decode_json_batch(values, [None] * n, partitions, offsets, max_message_bytes=MAX_BYTES,
                             max_ts_ms=MAX_TS_MS), list(zip(partitions, offsets, strict=True))


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@PROPERTY
@given(st.lists(messages, min_size=1, max_size=12))
def test_every_message_is_one_row_or_one_reject_with_a_reason(values: list[bytes]) -> None:
    out, where = decode(values)
    rows = list(zip(out.raw["kafka_partition"], out.raw["kafka_offset"], strict=True))
    rejected = [(r.partition, r.offset) for r in out.rejects]
    assert sorted((int(p), int(o)) for p, o in rows + rejected) == sorted(where)  # each exactly once
    for r in out.rejects:
        assert r.reason in REASONS and r.detail
        assert r.value == values[where.index((r.partition, r.offset))]  # the original bytes, for the DLQ
        if len(r.value) > MAX_BYTES:
            assert r.reason == OVERSIZED
        elif not _is_utf8(r.value):
            assert r.reason == INVALID_UTF8
    n = len(out)
    assert len(out.account_ids) == n
    assert all(len(col) == n for col in (*out.kernel.values(), *out.raw.values()))


@PROPERTY
@given(st.lists(messages, min_size=1, max_size=12))
def test_rows_hold_only_what_the_contract_and_clickhouse_accept(values: list[bytes]) -> None:
    out, where = decode(values)
    for i in range(len(out)):
        value = values[where.index((int(out.raw["kafka_partition"][i]), int(out.raw["kafka_offset"][i])))]
        assert len(value) <= MAX_BYTES
        event = ApiCallEvent.model_validate_json(value)  # the contract accepts it too
        assert (out.account_ids[i], out.raw["event_id"][i]) == (event.account_id, event.event_id)
        assert TS_MIN_MS <= int(out.raw["ts"][i]) <= MAX_TS_MS
        for name, col in out.raw.items():
            cell = col[i]
            if isinstance(cell, str):
                cell.encode("utf-8")  # a lone surrogate would make the insert fail later
            elif isinstance(cell, float):
                assert not math.isinf(cell), name


@PROPERTY
@given(broken_events(), st.integers(2, 4))
def test_resent_copies_are_all_decoded_the_decoder_does_not_judge_duplicates(value: bytes, copies: int) -> None:
    out, _ = decode([value] * copies)
    assert (len(out), len(out.rejects)) in ((copies, 0), (0, copies))
    assert len({(r.reason, r.field) for r in out.rejects}) <= 1  # every copy judged alike
