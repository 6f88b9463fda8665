"""The fast JSON decoder's differential cases, shared by its tests and the msgspec bench's: base events,
the contract table row by row, and the check that two decoders gave the same result."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import orjson

from jobs.loadgen import ScenarioConfig, generate
from pipeline.decode import rejects
from pipeline.decode.json_events import DecodedBatch
from schemas.event import TS_MAX_MS, TS_MIN_MS
from tests.support.events import EXAMPLE, MINIMAL


def loadgen_events(count: int, **config: Any) -> list[dict[str, Any]]:
    return list(itertools.islice(generate(ScenarioConfig(duration_s=600, **config)), count))


BASES: list[dict[str, Any]] = [EXAMPLE, MINIMAL, *loadgen_events(40, rfc3339_fraction=0.5)]


def assert_same(fast: DecodedBatch, slow: DecodedBatch) -> None:
    """Equal rows, columns (values and dtypes; floats bit for bit, so NaN and -0.0 count) and rejects."""
    assert fast.account_ids == slow.account_ids
    assert all(type(a) is str for a in fast.account_ids)
    for name, columns_f, columns_s in (("kernel", fast.kernel, slow.kernel), ("raw", fast.raw, slow.raw)):
        assert list(columns_f) == list(columns_s), name
        for col in columns_s:
            a, b = columns_f[col], columns_s[col]
            if isinstance(b, np.ndarray):
                assert isinstance(a, np.ndarray) and a.dtype == b.dtype and a.shape == b.shape, (name, col)
                if b.dtype.kind == "f":
                    bits = np.uint32 if b.itemsize == 4 else np.uint64
                    a, b = a.view(bits), b.view(bits)
                assert np.array_equal(a, b), (name, col, a, b)
            else:
                assert type(a) is list and a == b, (name, col, a, b)
                assert all(type(x) is str for x in a), (name, col)
    assert [reject_tuple(r) for r in fast.rejects] == [reject_tuple(r) for r in slow.rejects]


def reject_tuple(r: rejects.Rejected) -> tuple[object, ...]:
    return r.partition, r.offset, r.key, r.value, r.reason, r.field, r.detail


def contract_event(change: dict[str, Any] | None = None, drop: str | None = None) -> bytes:
    obj = {**MINIMAL, **(change or {})}
    obj.pop(drop, None)
    return orjson.dumps(obj)


# (change to MINIMAL, expected field of the reject or None if valid, decided without pydantic?)
CONTRACT_CASES: list[tuple[dict[str, Any], str | None, bool]] = [
    ({"schema_version": 1}, None, True),
    ({"schema_version": 2}, "schema_version", True),
    ({"schema_version": "1"}, "schema_version", True),
    ({"schema_version": True}, None, True),  # pydantic's Literal[1] accepts true
    ({"schema_version": 1.0}, None, True),  # ... and 1.0
    ({"event_id": ""}, "event_id", True),
    ({"event_id": "x" * 64}, None, True),
    ({"event_id": "x" * 65}, "event_id", True),
    ({"event_id": "é" * 64}, None, True),  # characters, not bytes
    ({"event_id": 7}, "event_id", True),
    ({"ts": "2026-02-12T09:30:00.123Z"}, None, True),
    ({"ts": "2026-02-12T10:30:00.5+01:00"}, None, True),
    ({"ts": "2026-02-12T09:30:00.123456789-05:00"}, None, True),
    ({"ts": "2026-02-12T09:30:00"}, "ts", False),  # no offset: fromisoformat words the reason
    ({"ts": "2026-02-12T09:30:00+0100"}, None, False),  # accepted by fromisoformat, not the fast form
    ({"ts": "yesterday"}, "ts", False),
    ({"ts": 1770888600123}, None, True),
    ({"ts": TS_MIN_MS - 1}, "ts", True),
    ({"ts": TS_MAX_MS}, "ts", True),
    ({"ts": 1770888600123.0}, "ts", True),
    ({"ts": True}, "ts", True),
    ({"ts": None}, "ts", True),
    ({"account_id": "a" * 128}, None, True),
    ({"account_id": "a" * 129}, "account_id", True),
    ({"api_key_id": ""}, "api_key_id", True),
    ({"client_ip": "203.0.113.7"}, None, True),
    ({"client_ip": "2001:DB8::1"}, None, True),  # pending: ipaddress normalises it
    ({"client_ip": "300.1.1.1"}, "client_ip", True),
    ({"client_ip": "1.2.3.04"}, "client_ip", True),
    ({"client_ip": "example.com"}, "client_ip", True),
    ({"client_ip": "2001:db8:::1"}, "client_ip", False),
    ({"asn": 0}, None, True),
    ({"asn": -1}, "asn", True),
    ({"asn": 2**32}, "asn", True),
    ({"asn": None}, None, True),
    ({"asn": 1.0}, "asn", True),  # strict: a float is not an integer
    ({"asn": True}, "asn", True),  # strict: a bool is not an integer
    ({"network_type": "tor"}, None, True),
    ({"network_type": "satellite"}, "network_type", True),
    ({"network_type": None}, "network_type", True),
    ({"country": "US"}, None, True),
    ({"country": "USA"}, "country", True),
    ({"country": "us"}, "country", True),
    ({"user_agent": "u" * 512}, None, True),
    ({"user_agent": "u" * 513}, "user_agent", True),
    ({"endpoint": ""}, "endpoint", True),
    ({"model": "m" * 129}, "model", True),
    ({"status": 99}, "status", True),
    ({"status": 600}, "status", True),
    ({"status": "200"}, "status", True),
    ({"latency_ms": 0}, None, True),
    ({"prompt_tokens": -5}, "prompt_tokens", True),
    ({"completion_tokens": 1.5}, "completion_tokens", True),
    ({"reasoning_tokens": None}, "reasoning_tokens", True),
    ({"prompt_hash": "9f86d081884c7d65"}, None, True),
    ({"prompt_hash": "9F86D081884C7D65"}, "prompt_hash", True),
    ({"prompt_simhash": "abc"}, "prompt_simhash", True),
    ({"prompt_text": "derive me"}, None, True),  # hashes, topic, elicits_reasoning are derived in Python
    ({"prompt_text": "x", "prompt_hash": "0123456789abcdef", "prompt_simhash": "0123456789abcdef",
      "topic": "math", "elicits_reasoning": False}, None, True),  # nothing left to derive
    ({"prompt_text": "x", "prompt_hash": "0123456789abcdef", "prompt_simhash": "0123456789abcdef",
      "topic": "math"}, None, True),  # elicits_reasoning is derived
    ({"prompt_text": "x", "prompt_hash": "0123456789abcdef", "prompt_simhash": "0123456789abcdef",
      "topic": None, "elicits_reasoning": True}, None, True),  # a null topic is derived
    ({"topic": "math", "elicits_reasoning": True}, None, True),  # the classifier's fields, no text: fast
    ({"prompt_text": "p" * 32_769}, "prompt_text", True),
    ({"topic": "t" * 65}, "topic", True),
    ({"elicits_reasoning": True}, None, True),
    ({"elicits_reasoning": 1}, "elicits_reasoning", True),
    ({"temperature": 0}, None, True),
    ({"temperature": 2.0}, None, True),
    ({"temperature": 2.5}, "temperature", True),
    ({"temperature": 0.30000000000000004}, None, True),  # pending: rounded by float()
    ({"top_p": -0.1}, "top_p", True),
    ({"top_p": "0.5"}, "top_p", True),
    ({"n": 0}, "n", True),
    ({"n": 65_535}, None, True),
    ({"max_tokens": 0}, "max_tokens", True),
    ({"logprobs": "true"}, "logprobs", True),
    ({"top_logprobs": 20}, None, True),
    ({"top_logprobs": 21}, "top_logprobs", True),
    ({"logit_bias_count": -1}, "logit_bias_count", True),
    ({"stream": None}, "stream", True),
    ({"payment_fingerprint": "f" * 129}, "payment_fingerprint", True),
    ({"tls_fingerprint": "t13d1516h2_8daaf6152771_b186095e22b6", "http2_fingerprint": "1:65536|15663105|0|m,a,s,p"},
     None, True),
    ({"tls_fingerprint": "f" * 128, "http2_fingerprint": "h" * 256}, None, True),
    ({"tls_fingerprint": "f" * 129}, "tls_fingerprint", True),
    ({"tls_fingerprint": 5}, "tls_fingerprint", True),
    ({"http2_fingerprint": "h" * 257}, "http2_fingerprint", True),
    ({"unknown": {"nested": [1, {"a": None}], "s": "\\\"é"}}, None, True),
]
