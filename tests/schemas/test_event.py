"""The event contract: what it accepts, what it rejects and why (field-level)."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from schemas.event import ApiCallEvent
from schemas.json_schema import SCHEMA_PATH, event_json_schema
from schemas.prompt_hashing import prompt_hash_hex, prompt_simhash_hex
from tests.support.events import EXAMPLE, MINIMAL


def parse(obj: dict[str, Any]) -> ApiCallEvent:
    return ApiCallEvent.model_validate_json(orjson.dumps(obj))


def reject(obj: dict[str, Any]) -> list[dict[str, Any]]:
    with pytest.raises(ValidationError) as info:
        parse(obj)
    return info.value.errors()


def test_contract_example_is_accepted() -> None:
    e = parse(EXAMPLE)
    assert e.ts == 1770888600123
    assert e.network_type == "hosting" and e.top_logprobs == 5 and e.schema_version == 1


def test_minimal_event_gets_documented_defaults() -> None:
    e = parse(MINIMAL)
    assert (e.schema_version, e.network_type, e.reasoning_tokens, e.n) == (1, "unknown", 0, 1)
    assert not (e.elicits_reasoning or e.logprobs or e.stream) and e.logit_bias_count == 0


@pytest.mark.parametrize("ts, ms", [
    (1770888600123, 1770888600123),
    ("2026-02-12T09:30:00Z", 1770888600000),
    ("2026-02-12T10:30:00.5+01:00", 1770888600500),
    ("2026-02-12T09:30:00.123456Z", 1770888600123),
])
def test_ts_forms(ts: object, ms: int) -> None:
    assert parse({**MINIMAL, "ts": ts}).ts == ms


def test_client_fingerprints_are_accepted_up_to_their_bounds() -> None:
    e = parse({**MINIMAL, "tls_fingerprint": "t13d1516h2_8daaf6152771_b186095e22b6", "http2_fingerprint": "h" * 256})
    assert e.tls_fingerprint == "t13d1516h2_8daaf6152771_b186095e22b6" and len(e.http2_fingerprint or "") == 256


def test_unknown_fields_are_ignored() -> None:
    assert parse({**MINIMAL, "future_field": {"x": [1, 2]}}).event_id == "01JM4Z8Q9X"


def test_ipv6_is_accepted_and_normalised() -> None:
    assert parse({**MINIMAL, "client_ip": "2001:DB8::1"}).client_ip == "2001:db8::1"


@pytest.mark.parametrize("change, field", [
    ({"schema_version": 2}, "schema_version"),
    ({"event_id": ""}, "event_id"),
    ({"event_id": "x" * 65}, "event_id"),
    ({"ts": "2026-02-12 09:30:00"}, "ts"),  # no offset, no T
    ({"ts": "2026-02-12T09:30:00"}, "ts"),  # no offset
    ({"ts": "yesterday"}, "ts"),
    ({"ts": True}, "ts"),
    ({"ts": 12}, "ts"),  # 1970: a clock bug
    ({"account_id": "a" * 129}, "account_id"),
    ({"client_ip": "300.1.1.1"}, "client_ip"),
    ({"client_ip": "example.com"}, "client_ip"),
    ({"asn": -1}, "asn"),
    ({"network_type": "satellite"}, "network_type"),
    ({"country": "USA"}, "country"),
    ({"user_agent": "u" * 513}, "user_agent"),
    ({"status": 99}, "status"),
    ({"status": 600}, "status"),
    ({"status": "200"}, "status"),  # strict: no coercion from strings
    ({"prompt_tokens": -5}, "prompt_tokens"),
    ({"completion_tokens": 1.5}, "completion_tokens"),
    ({"prompt_hash": "9F86D081884C7D65"}, "prompt_hash"),  # lowercase only
    ({"prompt_simhash": "abc"}, "prompt_simhash"),
    ({"prompt_text": "p" * 32_769}, "prompt_text"),
    ({"topic": "t" * 65}, "topic"),
    ({"elicits_reasoning": 1}, "elicits_reasoning"),
    ({"temperature": 2.5}, "temperature"),
    ({"top_p": -0.1}, "top_p"),
    ({"n": 0}, "n"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"top_logprobs": 21}, "top_logprobs"),
    ({"logit_bias_count": -1}, "logit_bias_count"),
    ({"payment_fingerprint": "f" * 129}, "payment_fingerprint"),
    ({"tls_fingerprint": "f" * 129}, "tls_fingerprint"),
    ({"http2_fingerprint": "h" * 257}, "http2_fingerprint"),
])
def test_rejections_name_the_field(change: dict[str, Any], field: str) -> None:
    errors = reject({**MINIMAL, **change})
    assert [e["loc"][0] for e in errors] == [field]
    assert errors[0]["msg"]


@pytest.mark.parametrize("missing", ["event_id", "ts", "account_id", "api_key_id", "client_ip", "endpoint",
                                     "model", "status", "prompt_tokens", "completion_tokens"])
def test_required_fields(missing: str) -> None:
    errors = reject({k: v for k, v in MINIMAL.items() if k != missing})
    assert errors[0]["loc"] == (missing,) and errors[0]["type"] == "missing"


def test_prompt_text_derives_hashes_and_is_never_kept() -> None:
    e = parse({**MINIMAL, "prompt_text": "Explain  step by step: what is 2+2?"})
    assert e.prompt_hash == prompt_hash_hex("explain step by step: what is 2+2?")
    assert e.prompt_simhash == prompt_simhash_hex("Explain step by step: what is 2+2?")
    assert e.prompt_text is None
    assert "prompt_text" not in e.model_dump()
    given = parse({**MINIMAL, "prompt_text": "anything", "prompt_hash": "0123456789abcdef"})
    assert given.prompt_hash == "0123456789abcdef"  # a gateway's own hash wins


def test_simhash_keeps_templates_close() -> None:
    a = int(prompt_simhash_hex("Translate the following sentence into French: the cat sat on the mat"), 16)
    b = int(prompt_simhash_hex("Translate the following sentence into French: the dog sat on the mat"), 16)
    c = int(prompt_simhash_hex("Write a haiku about autumn leaves falling in the quiet forest"), 16)
    assert bin(a ^ b).count("1") < bin(a ^ c).count("1")


def test_exported_json_schema_is_current() -> None:
    assert json.loads(SCHEMA_PATH.read_text()) == json.loads(json.dumps(event_json_schema(), sort_keys=True))
    required = set(event_json_schema()["required"])
    assert required == set(MINIMAL)
