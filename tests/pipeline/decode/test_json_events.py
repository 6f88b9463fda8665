"""Decoding fetched batches: every message is a row or a reject, with a reason."""

from __future__ import annotations

import orjson
import pytest

from pipeline.decode import rejects
from pipeline.decode.client_ip import ip_key
from pipeline.decode.json_events import decode_json_batch
from pipeline.kernels.layout import FLAG_LOGIT_BIAS, FLAG_LOGPROBS, FLAG_MULTI_N, FLAG_REASONING, FLAG_STREAM
from tests.support.events import EXAMPLE, MINIMAL

FAR_FUTURE = 4_102_444_800_000


def decode(values: list[bytes], max_ts_ms: int = FAR_FUTURE, max_bytes: int = 65_536):
    n = len(values)
    return decode_json_batch(values, [b"k"] * n, [i % 3 for i in range(n)], list(range(100, 100 + n)),
                             max_message_bytes=max_bytes, max_ts_ms=max_ts_ms)


def test_valid_events_become_columns() -> None:
    batch = decode([orjson.dumps(EXAMPLE), orjson.dumps({**MINIMAL, "n": 3, "stream": True,
                                                         "logit_bias_count": 2, "account_id": "b"})])
    assert batch.account_ids == ["org-7731", "b"] and not batch.rejects
    k = batch.kernel
    assert k["ts_ms"].tolist() == [1770888600123, 1770888600123]
    assert k["prompt_hash"][0] == 0x9F86D081884C7D65 and k["prompt_hash"][1] == 0
    assert k["flags"].tolist() == [FLAG_REASONING | FLAG_LOGPROBS, FLAG_MULTI_N | FLAG_STREAM | FLAG_LOGIT_BIAS]
    assert k["part"].tolist() == [0, 1]
    assert k["ip_key"][0] == (203 << 24) + (0 << 16) + (113 << 8) + 7
    assert batch.raw["kafka_offset"].tolist() == [100, 101]  # type: ignore[union-attr]
    assert batch.raw["top_logprobs"].tolist() == [5, -1]  # type: ignore[union-attr]


@pytest.mark.parametrize("value, reason, field", [
    (b"\xff\xfe{not utf8", rejects.INVALID_UTF8, ""),
    (b"{\"event_id\": ", rejects.INVALID_JSON, ""),
    (b"[1, 2, 3]", rejects.NOT_AN_OBJECT, ""),
    (b"42", rejects.NOT_AN_OBJECT, ""),
    (orjson.dumps({**MINIMAL, "status": 700}), rejects.SCHEMA, "status"),
    (orjson.dumps({k: v for k, v in MINIMAL.items() if k != "account_id"}), rejects.SCHEMA, "account_id"),
])
def test_rejects_carry_reason_field_and_original_bytes(value: bytes, reason: str, field: str) -> None:
    batch = decode([orjson.dumps(MINIMAL), value])
    assert len(batch) == 1
    (r,) = batch.rejects
    assert (r.reason, r.field, r.value, r.partition, r.offset) == (reason, field, value, 1, 101)
    assert r.detail
    headers = dict(r.headers())
    assert headers["dw-reason"] == reason.encode() and headers["dw-source-offset"] == b"101"


def test_oversized_and_future_events_are_rejected() -> None:
    big = orjson.dumps({**MINIMAL, "user_agent": "u" * 500, "pad": "x" * 5000})
    batch = decode([big, orjson.dumps(MINIMAL)], max_ts_ms=1_000_000_000_000, max_bytes=2048)
    assert [r.reason for r in batch.rejects] == [rejects.OVERSIZED, rejects.TS_IN_FUTURE]
    assert len(batch) == 0


def test_nothing_is_lost_valid_plus_rejected_equals_input() -> None:
    values = [orjson.dumps({**MINIMAL, "event_id": f"e{i}", "status": 200 if i % 7 else 99}) for i in range(500)]
    values += [b"garbage"] * 13
    batch = decode(values)
    assert len(batch) + len(batch.rejects) == len(values)
    assert len(batch.rejects) == 13 + len([i for i in range(500) if i % 7 == 0])
    assert len(batch.raw["event_id"]) == len(batch)  # type: ignore[arg-type]


def test_ip_key_folds_ipv6() -> None:
    assert ip_key("10.0.0.1") == 0x0A000001
    assert ip_key("2001:db8::1") == 0x20010DB800000000 ^ 1
