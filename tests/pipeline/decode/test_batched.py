"""DWB1 batch containers: round trip against the JSON decoder, invalid events, corrupt containers, dispatch."""

from __future__ import annotations

import struct
from itertools import islice
from typing import Any

import numpy as np
import orjson
import pytest

from jobs.loadgen import ScenarioConfig, generate
from pipeline.decode import rejects
from pipeline.decode.batch_format import (
    MAX_EVENTS,
    build_container,
    dict_column,
    is_batch,
    numeric_column,
    parse_container,
)
from pipeline.decode.dispatch import decode_any_batch
from pipeline.decode.json_events import DecodedBatch, decode_json_batch
from pipeline.producer.batch_encoder import InvalidEventError, encode_columns, encode_events
from tests.support.batched import FAR_FUTURE, assert_same_rows, decode_one
from tests.support.events import EXAMPLE, MINIMAL


def loadgen_events(n: int, seed: int = 3) -> list[dict[str, Any]]:
    config = ScenarioConfig(seed=seed, rate_eps=500, duration_s=60, rfc3339_fraction=0.2)
    return list(islice(generate(config), n))


def decode_as_json(events: list[dict[str, Any]], *, partition: int = 2, offset: int = 77,
                   max_ts_ms: int = FAR_FUTURE) -> DecodedBatch:
    n = len(events)
    return decode_json_batch([orjson.dumps(e) for e in events], [b"key"] * n, [partition] * n, [offset] * n,
                             max_message_bytes=65_536, max_ts_ms=max_ts_ms)


def test_round_trip_equals_the_json_decoder_on_loadgen_events() -> None:
    events = loadgen_events(3000)
    value = encode_events(events)
    assert is_batch(value) and len(value) < sum(len(orjson.dumps(e)) for e in events) / 3
    got = decode_one(value)
    assert not got.rejects and len(got) == len(events)
    assert_same_rows(got, decode_as_json(events))


def test_optional_fields_absent_and_present_decode_like_json() -> None:
    events = [EXAMPLE, MINIMAL, {**MINIMAL, "event_id": "x2", "asn": 0, "max_tokens": 7, "top_p": 1.0, "n": 4,
                                 "top_logprobs": 12, "country": "DE", "network_type": "tor", "stream": True,
                                 "client_ip": "2001:DB8::1", "payment_fingerprint": "pf", "topic": ""}]
    got = decode_one(encode_events(events))
    assert not got.rejects
    assert_same_rows(got, decode_as_json(events))
    assert got.raw["client_ip"][2] == "2001:db8::1"  # normalised like the contract model does


def test_prompt_text_becomes_hashes_and_is_never_sent() -> None:
    event = {**MINIMAL, "prompt_text": "Explain step by step: why is the sky blue?"}
    value = encode_events([event])
    assert b"sky" not in value
    assert_same_rows(decode_one(value), decode_as_json([event]))


# (fields, reason, field): an event with these fields, and what the JSON decoder says about it as JSON.
INVALID: list[tuple[dict[str, Any], str, str]] = [
    ({"status": 700}, rejects.SCHEMA, "status"),
    ({"status": 99}, rejects.SCHEMA, "status"),
    ({"network_type": "satellite"}, rejects.SCHEMA, "network_type"),
    ({"country": "de"}, rejects.SCHEMA, "country"),
    ({"event_id": "e" * 65}, rejects.SCHEMA, "event_id"),
    ({"account_id": ""}, rejects.SCHEMA, "account_id"),
    ({"client_ip": "999.1.1.1"}, rejects.SCHEMA, "client_ip"),
    ({"user_agent": "u" * 513}, rejects.SCHEMA, "user_agent"),
    ({"topic": "t" * 65}, rejects.SCHEMA, "topic"),
    ({"n": 0}, rejects.SCHEMA, "n"),
    ({"max_tokens": 0}, rejects.SCHEMA, "max_tokens"),
    ({"top_logprobs": 21}, rejects.SCHEMA, "top_logprobs"),
    ({"temperature": 2.5}, rejects.SCHEMA, "temperature"),
    ({"top_p": -0.1}, rejects.SCHEMA, "top_p"),
    ({"ts": 946_684_799_999}, rejects.SCHEMA, "ts"),
    ({"model": None}, rejects.SCHEMA, "model"),  # None = absent: a required field missing
    ({"status": 700, "country": "xx"}, rejects.SCHEMA, "country"),  # the first in contract order
]


def test_invalid_events_are_rejected_one_by_one_like_json() -> None:
    valid = loadgen_events(200)
    invalid = [{**MINIMAL, "event_id": f"bad-{i}", "account_id": f"acct-{i}", **fields}
               for i, (fields, _, _) in enumerate(INVALID)]
    events = valid[:100] + invalid + valid[100:]
    got = decode_one(encode_events(events, validate=False))
    assert_same_rows(got, decode_as_json(valid))  # the valid ones pass, in order
    assert len(got.rejects) == len(INVALID)
    want = decode_as_json([{k: v for k, v in e.items() if v is not None} for e in invalid]).rejects
    for i, (mine, theirs, event) in enumerate(zip(got.rejects, want, invalid, strict=True)):
        _, reason, field = INVALID[i]
        assert (mine.reason, mine.field) == (reason, field) == (theirs.reason, theirs.field)
        assert (mine.partition, mine.offset) == (2, 77)
        assert mine.key == event["account_id"].encode()  # the contract's key: the event's account id
        assert mine.detail.startswith(f"event {100 + i} of {len(events)} in batch: {field}")
        # The dead letter is the event as readable JSON, and it fails the same way as JSON.
        assert orjson.loads(mine.value)["event_id"] == event["event_id"]
        again = decode_as_json([orjson.loads(mine.value)]).rejects[0]
        assert (again.reason, again.field) == (reason, field)


def test_future_events_are_rejected_with_the_json_reason() -> None:
    events = [{**MINIMAL, "event_id": "now", "ts": 1_000}, {**MINIMAL, "event_id": "later", "ts": 2_000_000_000_000}]
    events[0]["ts"] = 1_770_000_000_000
    got = decode_one(encode_events(events), max_ts_ms=1_800_000_000_000)
    assert got.raw["event_id"] == ["now"]
    (r,) = got.rejects
    assert (r.reason, r.field) == (rejects.TS_IN_FUTURE, "ts")


def _container(n: int, columns: dict[str, tuple[list[bytes], list[int]]], numbers: dict[str, np.ndarray]) -> bytes:
    parts = [dict_column(name, entries, np.array(codes)) for name, (entries, codes) in columns.items()]
    parts += [numeric_column(name, values, None) for name, values in numbers.items()]
    return build_container(n, parts)


def _minimal_columns(n: int) -> tuple[dict[str, tuple[list[bytes], list[int]]], dict[str, np.ndarray]]:
    strings = {name: ([MINIMAL[name].encode()], [0] * n) for name in
               ("event_id", "account_id", "api_key_id", "client_ip", "endpoint", "model")}
    strings["event_id"] = ([f"e{i}".encode() for i in range(n)], list(range(n)))
    numbers = {"ts": np.full(n, 1_770_000_000_000, "<i8"), "status": np.full(n, 200, "<u2"),
               "prompt_tokens": np.full(n, 5, "<u4"), "completion_tokens": np.full(n, 6, "<u4")}
    return strings, numbers


def test_invalid_utf8_and_bad_booleans_reject_only_their_events() -> None:
    strings, numbers = _minimal_columns(3)
    strings["user_agent"] = ([b"ok/1", b"\xff\xfe"], [0, 1, -1])
    numbers["stream"] = np.array([1, 0, 2], "<u1")
    got = decode_one(_container(3, strings, numbers))
    assert got.raw["event_id"] == ["e0"]
    assert [(r.reason, r.field) for r in got.rejects] == [(rejects.INVALID_UTF8, "user_agent"),
                                                         (rejects.SCHEMA, "stream")]


def test_unknown_columns_are_skipped() -> None:
    strings, numbers = _minimal_columns(2)
    strings["brand_new_field"] = ([b"x"], [0, 0])
    got = decode_one(_container(2, strings, numbers))
    assert len(got) == 2 and not got.rejects


def _valid_container() -> bytes:
    return encode_events([MINIMAL, {**MINIMAL, "event_id": "two"}])


def _corrupt() -> list[tuple[str, bytes]]:
    good = _valid_container()
    strings, numbers = _minimal_columns(2)
    others = [dict_column(k, e, np.array(c)) for k, (e, c) in strings.items() if k != "model"]
    others += [numeric_column(k, v, None) for k, v in numbers.items()]
    model = dict_column("model", [b"ab", b"c"], np.array([0, 1]))
    # The second dictionary offset (after the 16-byte column header and the 8-byte dictionary
    # header) from 2 to 4: offsets 0, 4, 3 go backwards.
    unordered = model[:28] + struct.pack("<I", 4) + model[32:]
    return [
        ("unknown version", b"DWB9" + good[4:]),
        ("truncated", good[:-9]),
        ("trailing bytes", good + b"\0" * 8),
        ("header only", good[:7]),
        ("codes out of range", _container(2, dict(strings, model=([b"m"], [0, 5])), numbers)),
        ("required column missing", build_container(2, others)),
        ("offsets out of order", build_container(2, [*others, unordered])),
        ("duplicate column", build_container(2, [*others, model, model])),
        ("too many events", struct.pack("<4sIHH", b"DWB1", MAX_EVENTS + 1, 0, 0)),
        ("unknown header flags", good[:10] + b"\x01\x00" + good[12:]),
    ]


@pytest.mark.parametrize("label, value", _corrupt(), ids=[label for label, _ in _corrupt()])
def test_corrupt_containers_reject_the_whole_message(label: str, value: bytes) -> None:
    got = decode_one(value)
    assert len(got) == 0
    (r,) = got.rejects
    assert (r.reason, r.field, r.value, r.key, r.partition, r.offset) == (rejects.INVALID_BATCH, "", value, b"key",
                                                                          2, 77)
    assert r.detail


def test_oversized_containers_are_rejected_whole() -> None:
    value = _valid_container()
    got = decode_one(value, max_bytes=len(value) // 2 - 1)  # two events: budget is twice the per-event limit
    assert [r.reason for r in got.rejects] == [rejects.OVERSIZED] and len(got) == 0
    assert len(decode_one(value, max_bytes=len(value) // 2 + 1)) == 2


def test_dispatch_mixes_json_and_containers_in_input_order() -> None:
    rng = np.random.default_rng(5)
    events = loadgen_events(900, seed=9)
    values, keys, expected, offsets = [], [], [], []
    i = 0
    while i < len(events):
        kind = rng.integers(0, 3)
        if kind == 0:  # a container of a few events
            chunk = events[i:i + int(rng.integers(1, 60))]
            values.append(encode_events(chunk))
            keys.append(None)
        elif kind == 1:  # one JSON event
            chunk = events[i:i + 1]
            values.append(orjson.dumps(chunk[0]))
            keys.append(chunk[0]["account_id"].encode())
        else:  # garbage JSON: a reject in between
            chunk = []
            values.append(b"{not json")
            keys.append(None)
        expected.extend(chunk)
        offsets.extend([len(values) - 1] * len(chunk))
        i += len(chunk)
    parts = [v % 3 for v in range(len(values))]
    got = decode_any_batch(values, keys, parts, list(range(len(values))), max_message_bytes=65_536,
                           max_ts_ms=FAR_FUTURE)
    n_garbage = values.count(b"{not json")
    assert len(got) == len(events) and len(got.rejects) == n_garbage
    assert got.raw["event_id"] == [e["event_id"] for e in expected]
    assert got.raw["kafka_offset"].tolist() == offsets  # type: ignore[union-attr]
    assert got.kernel["part"].tolist() == [o % 3 for o in offsets]
    assert [r.offset for r in got.rejects] == sorted(r.offset for r in got.rejects)
    # the same rows as decoding every event as JSON (partition/offset columns aside)
    want = decode_as_json(expected)
    for name in ("ts_ms", "ip_key", "flags", "prompt_hash"):
        assert np.array_equal(got.kernel[name], want.kernel[name])


def test_dispatch_of_an_empty_fetch_and_of_only_json() -> None:
    empty = decode_any_batch([], [], [], [], max_message_bytes=65_536, max_ts_ms=FAR_FUTURE)
    assert len(empty) == 0 and not empty.rejects and "ts_ms" in empty.kernel
    only = decode_any_batch([orjson.dumps(MINIMAL)], [b"k"], [0], [5], max_message_bytes=65_536,
                            max_ts_ms=FAR_FUTURE)
    assert only.account_ids == [MINIMAL["account_id"]]


def test_encoder_refuses_invalid_events_naming_the_field() -> None:
    cases = [
        ({**MINIMAL, "status": 700}, "status"),
        ({**MINIMAL, "status": "200"}, "status"),  # strict: a string is not an integer
        ({**MINIMAL, "stream": 1}, "stream"),  # strict: 1 is not a boolean
        ({**MINIMAL, "prompt_tokens": -1}, "prompt_tokens"),
        ({**MINIMAL, "prompt_hash": "XYZ"}, "prompt_hash"),
        ({**MINIMAL, "ts": "yesterday"}, "ts"),
        ({**MINIMAL, "account_id": 42}, "account_id"),
        ({**MINIMAL, "schema_version": 2}, "schema_version"),
        ({k: v for k, v in MINIMAL.items() if k != "endpoint"}, "endpoint"),
    ]
    for event, field in cases:
        with pytest.raises(InvalidEventError) as info:
            encode_events([MINIMAL, event])
        assert (info.value.index, info.value.field) == (1, field), event


def test_containers_parse_to_numpy_views_without_per_event_objects() -> None:
    value = encode_columns({
        "event_id": [f"e{i}" for i in range(1000)], "ts": np.full(1000, 1_770_000_000_000),
        "account_id": ["a", "b"] * 500, "api_key_id": ["k"] * 1000, "client_ip": ["10.0.0.1"] * 1000,
        "endpoint": ["/v1/responses"] * 1000, "model": ["m"] * 1000, "status": np.full(1000, 200),
        "prompt_tokens": np.arange(1000), "completion_tokens": np.arange(1000),
        "temperature": np.where(np.arange(1000) % 2, 0.5, np.nan),
    })
    n, columns = parse_container(value)
    assert n == 1000
    accounts = columns["account_id"]
    assert len(accounts.offsets) == 3 and accounts.codes.dtype == np.int8  # type: ignore[union-attr]
    assert columns["prompt_tokens"].values.base is not None  # type: ignore[union-attr]
    got = decode_one(value)
    assert np.isnan(got.raw["temperature"][0]) and got.raw["temperature"][1] == np.float32(0.5)


def test_a_damaged_container_is_dead_lettered_whole_or_accounts_for_every_event() -> None:
    """Damage never raises and never loses or invents an event: either the whole message is dead-lettered
    unchanged (``invalid_batch``), or each of its events is a row or a reject of its own."""
    events = [EXAMPLE, MINIMAL, {**MINIMAL, "event_id": "z", "country": "DE"}]
    good = encode_events(events)
    rng = np.random.default_rng(1)
    outcomes = {"whole": 0, "per event": 0}
    for _ in range(500):
        damaged = bytearray(good)
        for at in rng.integers(0, len(good), int(rng.integers(1, 4))).tolist():
            damaged[at] = int(rng.integers(0, 256))
        if rng.random() < 0.2:
            damaged = damaged[: int(rng.integers(0, len(damaged)))]
        got = decode_one(bytes(damaged))
        assert all(r.reason in rejects.REASONS and (r.partition, r.offset) == (2, 77) for r in got.rejects)
        if any(r.reason == rejects.INVALID_BATCH for r in got.rejects):
            assert len(got) == 0 and len(got.rejects) == 1 and got.rejects[0].value == bytes(damaged)
            outcomes["whole"] += 1
        else:
            assert len(got) + len(got.rejects) == len(events)
            outcomes["per event"] += 1
    assert min(outcomes.values()) > 0, outcomes  # both outcomes exercised
