"""The fast decoder gives exactly the pydantic decoder's result, and really is the path taken."""

from __future__ import annotations

import ipaddress
import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.decode import fast_json, rejects
from pipeline.decode.fast_json import PathCounts, decode_json_batch_fast
from pipeline.decode.json_events import DecodedBatch, decode_json_batch, path_counts
from pipeline.decode.pydantic_path import decode_json_batch_pydantic
from pipeline.kernels import event_spec as spec
from pipeline.kernels.json_judge import ipv4_key, rfc3339_ms
from schemas.event import NETWORK_TYPES, TS_MAX_MS, TS_MIN_MS, ApiCallEvent, _rfc3339_to_ms
from tests.support.decode_cases import BASES, CONTRACT_CASES, assert_same, contract_event, loadgen_events
from tests.support.events import MINIMAL
from tests.support.json_fuzz import PROMPT_TEXTS, json_string, message_batches, messages, prompt_bases

FAR_FUTURE = 2**62
PROMPT_BASES = prompt_bases(BASES)


def both(values: list[bytes], *, max_bytes: int = 65_536, max_ts_ms: int = FAR_FUTURE,
         keys: list[bytes | None] | None = None) -> tuple[DecodedBatch, DecodedBatch, PathCounts]:
    n = len(values)
    args = (values, keys if keys is not None else [b"k%d" % i for i in range(n)], [i % 5 for i in range(n)],
            list(range(1000, 1000 + n)))
    fast, counts = decode_json_batch_fast(*args, max_message_bytes=max_bytes, max_ts_ms=max_ts_ms)
    slow = decode_json_batch_pydantic(*args, max_message_bytes=max_bytes, max_ts_ms=max_ts_ms)
    return fast, slow, counts


# --- the fast path is the path taken ----------------------------------------------------------
def test_loadgen_events_never_fall_back() -> None:
    events = loadgen_events(3000, rfc3339_fraction=0.3, jitter_fraction=0.1, jitter_max_s=5.0)
    fast, slow, counts = both([orjson.dumps(e) for e in events])
    assert_same(fast, slow)
    assert len(fast) == 3000 and not fast.rejects
    assert counts.fallback == 0
    # Python checks IPv6 addresses and derives what prompt_text gives (non-English writers send it).
    pending = sum(":" in e["client_ip"] or "prompt_text" in e for e in events)
    assert any("prompt_text" in e for e in events)
    assert counts.pending == pending and counts.fast == 3000 - pending


def test_decode_json_batch_uses_the_fast_path_and_counts() -> None:
    before = PathCounts(path_counts.fast, path_counts.pending, path_counts.fallback)
    batch = decode_json_batch([contract_event(), b"nope"], [None, None], [0, 0], [1, 2], max_message_bytes=65_536,
                              max_ts_ms=FAR_FUTURE)
    assert len(batch) == 1 and batch.rejects[0].reason == rejects.INVALID_JSON
    assert (path_counts.fast - before.fast, path_counts.fallback - before.fallback) == (1, 1)


# --- differential: generated input -----------------------------------------------------------
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.sampled_from([BASES, PROMPT_BASES]).flatmap(message_batches),
       max_bytes=st.sampled_from([65_536, 65_536, 400, 2_000]),
       max_ts_ms=st.sampled_from([FAR_FUTURE, 1_770_888_600_123, 1_770_854_500_000]))
def test_same_result_as_pydantic_on_generated_batches(values: list[bytes], max_bytes: int, max_ts_ms: int) -> None:
    fast, slow, _ = both(values, max_bytes=max_bytes, max_ts_ms=max_ts_ms)
    assert_same(fast, slow)


def test_same_result_as_pydantic_on_a_large_mutated_batch() -> None:
    values = messages(BASES, 20_000, seed=20260212)
    fast, slow, counts = both(values, max_ts_ms=1_770_856_000_000)
    assert_same(fast, slow)
    # The generator must exercise every outcome, or this test proves little.
    assert len(fast) > 2000 and len(fast.rejects) > 2000
    assert {r.reason for r in fast.rejects} >= {rejects.INVALID_UTF8, rejects.INVALID_JSON, rejects.NOT_AN_OBJECT,
                                                rejects.SCHEMA, rejects.TS_IN_FUTURE}
    assert counts.fast > 10_000 and counts.pending > 50 and counts.fallback > 500


def test_same_result_as_pydantic_on_a_large_mutated_prompt_text_batch() -> None:
    values = messages(PROMPT_BASES, 6000, seed=20260213)
    fast, slow, counts = both(values, max_ts_ms=1_770_856_000_000)
    assert_same(fast, slow)
    # Most events derive on the fast path; mutations still reach rejects, futures and fallbacks.
    assert len(fast) > 1500 and len(fast.rejects) > 500 and counts.fallback > 100
    assert counts.pending > 3000 > counts.fallback
    assert {r.reason for r in fast.rejects} >= {rejects.SCHEMA, rejects.TS_IN_FUTURE}
    assert len(set(fast.raw["topic"])) > 4 and 0 < np.count_nonzero(fast.raw["elicits_reasoning"]) < len(fast)


@pytest.mark.parametrize("change, field", [
    ({"prompt_text": None}, None),  # null text: nothing derived
    ({"prompt_text": None, "topic": None}, None),
    ({"prompt_text": 7}, "prompt_text"),
    ({"prompt_text": ["step by step"]}, "prompt_text"),
    ({"prompt_text": True}, "prompt_text"),
    ({"prompt_text": {"a": "b"}}, "prompt_text"),
    ({"prompt_text": "x", "elicits_reasoning": None}, "elicits_reasoning"),  # not nullable: no derivation
    ({"prompt_text": "x", "prompt_hash": "XYZ"}, "prompt_hash"),  # an invalid given field wins
    ({"prompt_text": "step by step", "prompt_hash": None, "prompt_simhash": None}, None),
    ({"prompt_text": "step by step", "topic": ""}, None),  # an empty topic is given, not lacking
    ({"prompt_text": "", "elicits_reasoning": False}, None),  # empty text: derived from ""
    ({"prompt_text": "p" * 32_768}, None),  # the contract's limit, in characters
    ({"prompt_text": "p" * 32_769}, "prompt_text"),
    ({"prompt_text": "é" * 32_768}, None),  # 65,536 bytes: characters, not bytes, count
    ({"prompt_text": "\U0001f600" * 32_768}, None),
    ({"prompt_text": "\U0001f600" * 32_769, "asn": -1}, "asn"),  # the first failing field in model order
    ({"prompt_text": "\U0001f600" * 32_769}, "prompt_text"),
])
def test_prompt_text_rows(change: dict[str, Any], field: str | None) -> None:
    values = [contract_event(change), json.dumps({**MINIMAL, **change}).encode(),  # raw UTF-8, then \u escapes
              contract_event({**change, "client_ip": "2001:DB8::1", "temperature": 0.30000000000000004})]
    fast, slow, counts = both(values, max_bytes=500_000, max_ts_ms=FAR_FUTURE)
    assert_same(fast, slow)
    assert [r.field for r in fast.rejects] == ([field] * 3 if field else [])
    assert counts.fallback == (1 if field else 0)  # an error beside a pending IPv6 address: pydantic counts


def test_prompt_text_is_derived_once_per_text_whatever_its_spelling(monkeypatch: pytest.MonkeyPatch) -> None:
    derived: list[list[str]] = []
    original = fast_json.derive_many

    def derive_many(texts: list[str], fields: list[str]) -> dict[str, list[str | bool]]:
        derived.append(list(texts))
        return original(texts, fields)

    monkeypatch.setattr(fast_json, "derive_many", derive_many)
    rng = random.Random(4)
    values = []
    for i in range(600):
        text = PROMPT_TEXTS[i % len(PROMPT_TEXTS)]
        event = {**MINIMAL, "event_id": f"e{i}", "ts": 1_770_888_600_000 + i}
        if i % 3:
            event["topic"] = None
        values.append(orjson.dumps(event)[:-1] + b',"prompt_text":' + json_string(text, rng).encode() + b"}")
    fast, slow, counts = both(values, max_ts_ms=1_770_888_600_000 + 500)  # the last 99 are in the future
    assert_same(fast, slow)
    assert (counts.pending, counts.fallback, len(fast.rejects)) == (600, 0, 99)
    assert len(set(fast.raw["topic"])) > 3
    assert len(derived) == 1 and sorted(derived[0]) == sorted(set(PROMPT_TEXTS))


@settings(max_examples=200, deadline=None)
@given(obj=st.fixed_dictionaries({}, optional={
    "asn": st.one_of(st.none(), st.integers(-5, 2**33), st.booleans(), st.floats(allow_nan=False)),
    "temperature": st.one_of(st.none(), st.floats(-1, 3), st.integers(-2, 3), st.text(max_size=3)),
    "top_p": st.floats(allow_nan=False, allow_infinity=False),
    "country": st.text(max_size=3),
    "user_agent": st.text(max_size=600),
    "topic": st.one_of(st.text(max_size=70), st.integers(), st.none()),
    "prompt_text": st.one_of(st.text(max_size=200), st.sampled_from(PROMPT_TEXTS), st.none(), st.integers()),
    "prompt_hash": st.one_of(st.none(), st.sampled_from(["9f86d081884c7d65", "9F86D081884C7D65"])),
    "elicits_reasoning": st.one_of(st.booleans(), st.none()),
    "n": st.integers(-1, 70_000),
    "top_logprobs": st.one_of(st.none(), st.integers(-1, 25)),
    "event_id": st.text(min_size=0, max_size=70),
    "client_ip": st.one_of(st.ip_addresses().map(str), st.text(alphabet="0123456789.:abcdef", max_size=20)),
    "ts": st.one_of(st.integers(TS_MIN_MS - 5, TS_MAX_MS + 5), st.datetimes(
        min_value=datetime(1999, 12, 31), max_value=datetime(2100, 1, 2),
        timezones=st.sampled_from([UTC, None])).map(lambda d: d.isoformat().replace("+00:00", "Z"))),
    "extra": st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3)),
}))
def test_same_result_as_pydantic_on_typed_values(obj: dict[str, Any]) -> None:
    value = json.dumps({**MINIMAL, **obj}, ensure_ascii=False).encode("utf-8", "surrogatepass")
    assert_same(*both([value, json.dumps({**MINIMAL, **obj}).encode()])[:2])


# --- the contract table, row by row ---------------------------------------------------------------
@pytest.mark.parametrize("change, field, fast_path", CONTRACT_CASES)
def test_contract_rows(change: dict[str, Any], field: str | None, fast_path: bool) -> None:
    fast, slow, counts = both([contract_event(change)])
    assert_same(fast, slow)
    assert (fast.rejects[0].field if fast.rejects else None) == field
    assert (counts.fallback == 0) == fast_path


@pytest.mark.parametrize("missing", [n for n, f in zip(spec.FIELD_NAMES, spec.REQUIRED, strict=True) if f])
def test_missing_required_field(missing: str) -> None:
    fast, slow, counts = both([contract_event(drop=missing)])
    assert_same(fast, slow)
    assert fast.rejects[0].field == missing and counts.fallback == 0


@pytest.mark.parametrize("value", [
    b'{"event_id":"a","asn":-1}',  # several errors: first in model order, "+N more"
    b'  {"status" : 200 }\n',
    b'{"event_id":"1","event_id":""}',  # duplicate keys: the last one counts
    b'{"asn":"x","asn":5}',
    b'{"\\u0061sn":5}',  # an escaped key spelling a field name
    b'{"ts":1e400}',
    b'{"temperature":NaN}',
    b'{"x":' + b"[" * 200 + b"]" * 200 + b"}",  # deep nesting
    b'{"x":1' + b"0" * 5000 + b"}",  # number out of jiter's range
    b'{"user_agent":"\\ud800"}',  # lone surrogate
    b'{"user_agent":"\xed\xa0\x80"}',  # invalid UTF-8 (an encoded surrogate)
    b'{"user_agent":"\x01"}',  # raw control character
    b"\xef\xbb\xbf{}",  # BOM
    b"", b"   ", b"null", b"[]", b'"s"', b"{}", b"{,}", b'{"a":1,}', b'{"a" 1}', b"{} {}",
])
def test_odd_messages(value: bytes) -> None:
    assert_same(*both([contract_event(), value, contract_event({"client_ip": "::1"})])[:2])


def test_future_and_oversized_and_order() -> None:
    values = [contract_event({"event_id": f"e{i}", "ts": 1770888600123 + i}) for i in range(6)]
    values[2] = b"x" * 3000
    values[4] = contract_event({"client_ip": "::1", "ts": 1770888600123 + 99})
    fast, slow, counts = both(values, max_bytes=2048, max_ts_ms=1770888600123 + 3)
    assert_same(fast, slow)
    assert [r.reason for r in fast.rejects] == [rejects.OVERSIZED, rejects.TS_IN_FUTURE, rejects.TS_IN_FUTURE]
    assert fast.raw["event_id"] == ["e0", "e1", "e3"] and counts.fallback == 0


def test_interned_columns_are_correct_across_escapes_and_repeats() -> None:
    models = ["m-a", "m-é", "m-\U0001f600", "m-a"]
    values = [contract_event({"model": m, "event_id": f"e{i}"}) for i, m in enumerate(models * 50)]
    values += [json.dumps({**MINIMAL, "model": "m-é"}).encode()]  # the same model, spelt \u00e9
    fast, slow, counts = both(values)
    assert_same(fast, slow)
    assert fast.raw["model"][-1] == "m-é" and counts.fallback == 0


def test_escaped_and_unicode_strings_stay_on_the_fast_path() -> None:
    event = {**MINIMAL, "user_agent": "curl/8 \"quoted\" \\ é 😀", "endpoint": "/v1/chat/completions"}
    values = [json.dumps(event).encode(),  # \uXXXX escapes, surrogate pairs
              json.dumps(event).replace("/", "\\/").encode(),  # PHP escapes every slash
              json.dumps(event, ensure_ascii=False).encode()]  # raw UTF-8
    fast, slow, counts = both(values)
    assert_same(fast, slow)
    assert counts.fallback == 0 and len(set(fast.raw["user_agent"])) == 1


@pytest.mark.parametrize("special", [r"\"", r"\\", r"\n", r"\u0000", "é", r"\u00e9", r"\ud83d\ude00", "\x01", "\x7f"])
def test_a_special_character_at_every_position(special: str) -> None:
    """The 8-bytes-at-a-time string scan finds special characters wherever they are."""
    values = []
    for length in range(0, 20):
        for pos in range(length + 1):
            text = "a" * pos + special + "a" * (length - pos)
            values.append(contract_event()[:-1] + f',"user_agent":"{text}","topic":"{text[:60]}"}}'.encode())
    assert_same(*both(values)[:2])


def test_many_distinct_values_grow_the_intern_table() -> None:
    values = [contract_event({"model": f"model-{i}", "api_key_id": f"k{i % 997}", "event_id": f"e{i}"})
              for i in range(30_000)]
    fast, slow, counts = both(values)
    assert_same(fast, slow)
    assert len(set(fast.raw["model"])) == 30_000 and counts.fallback == 0


def test_empty_batch() -> None:
    fast, slow, _ = both([])
    assert_same(fast, slow)


# --- the scanner's pieces and its copy of the contract ----------------------------------------------
@settings(max_examples=300, deadline=None)
@given(moment=st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2110, 1, 1)),
       digits=st.integers(0, 9), offset_min=st.integers(-23 * 60 - 59, 23 * 60 + 59))
def test_rfc3339_matches_fromisoformat(moment: datetime, digits: int, offset_min: int) -> None:
    frac = f"{moment.microsecond:06d}{moment.microsecond % 1000:03d}"[:digits]
    sign = "+" if offset_min >= 0 else "-"
    zone = "Z" if offset_min == 0 else f"{sign}{abs(offset_min) // 60:02d}:{abs(offset_min) % 60:02d}"
    text = moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{frac}" if digits else "") + zone
    data = np.frombuffer(text.encode(), np.uint8)
    ok, ms = rfc3339_ms(data, 0, data.size)
    assert ok and ms == _rfc3339_to_ms(text)


@settings(deadline=None)
@given(address=st.ip_addresses(v=4).map(str) | st.text(alphabet="0123456789.", max_size=17))
def test_ipv4_key_matches_ipaddress(address: str) -> None:
    data = np.frombuffer(address.encode(), np.uint8)
    try:
        expected = int(ipaddress.IPv4Address(address))
    except ValueError:
        expected = -1
    assert ipv4_key(data, 0, data.size) == expected


def test_scanner_spec_matches_the_model() -> None:
    """The scanner's spec, read from the model at import, has the model's kinds, bounds and defaults."""
    schema = ApiCallEvent.model_json_schema()
    assert tuple(ApiCallEvent.model_fields) == spec.FIELD_NAMES
    assert set(schema["required"]) == {n for n, r in zip(spec.FIELD_NAMES, spec.REQUIRED, strict=True) if r}
    assert (spec.TS_MIN_MS, spec.TS_MAX_MS, spec.NETWORK_TYPES) == (TS_MIN_MS, TS_MAX_MS, NETWORK_TYPES)
    for f, name in enumerate(spec.FIELD_NAMES):
        prop = schema["properties"][name]
        nullable = any(p.get("type") == "null" for p in prop.get("anyOf", []))
        typed = next((p for p in prop.get("anyOf", [prop]) if p.get("type") != "null"), prop)
        assert bool(spec.NULLABLE[f]) == nullable, name
        kind = spec.KIND[f]
        if kind in (spec.K_STR, spec.K_TEXT):
            assert (spec.LO[f], spec.HI[f]) == (typed.get("minLength", 0), typed["maxLength"]), name
        elif kind in (spec.K_INT, spec.K_FLOAT):
            assert (spec.LO[f], spec.HI[f]) == (typed["minimum"], typed["maximum"]), name
            if not nullable and name not in schema["required"]:
                assert spec.DEFAULT[f] == prop["default"], name
        elif kind == spec.K_COUNTRY:
            assert typed["pattern"] == "^[A-Z]{2}$"
        elif kind == spec.K_HEX:
            assert typed["pattern"] == "^[0-9a-f]{16}$"
        elif kind == spec.K_NET:
            assert tuple(typed["enum"]) == NETWORK_TYPES and NETWORK_TYPES[spec.DEFAULT[f]] == prop["default"]
        elif kind == spec.K_BOOL:
            assert typed["type"] == "boolean" and prop["default"] is False
        elif kind == spec.K_VERSION:
            assert typed["const"] == 1 == spec.DEFAULT[f]


def test_float_rounding_matches_for_many_spellings() -> None:
    rng = np.random.default_rng(5)
    values = [float(x) for x in rng.uniform(0, 1, 400)] + [float(x) for x in rng.uniform(0, 1, 100).round(3)]
    spellings = [repr(v) if form == "r" else format(v, form) for v in values for form in ("r", ".17g", ".3e", ".20f")]
    payload = [contract_event()[:-1] + f',"temperature":{s},"top_p":{s}}}'.encode() for s in spellings]
    fast, slow, counts = both(payload)
    assert_same(fast, slow)
    assert len(fast) == len(payload) and counts.fallback == 0
    assert counts.pending > 0 and counts.fast > 0  # both the exact fast path and float() were used


def test_rfc3339_loadgen_form_and_offsets_agree() -> None:
    base = datetime(2026, 2, 12, 9, 30, tzinfo=UTC)
    texts = [(base + timedelta(milliseconds=k * 7919)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
             for k in range(50)]
    fast, slow, counts = both([contract_event({"ts": t}) for t in texts])
    assert_same(fast, slow)
    assert counts.fallback == 0
