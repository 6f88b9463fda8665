"""DWB1 field list: derived from the contract, and still exactly wire format version 1."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from pipeline.decode.batch_format import FIELDS, KIND_DICT, KIND_NUMERIC, _spec
from schemas.event_rules import RULE


def _num(name: str, dtype: str, required: bool = False) -> tuple[str, int, np.dtype, bool]:
    return (name, KIND_NUMERIC, np.dtype(dtype), required)


def _str(name: str, required: bool = False) -> tuple[str, int, None, bool]:
    return (name, KIND_DICT, None, required)


# The hand-written FIELDS of pipeline/decode/batch_format.py before it was derived from
# the contract: the wire format of DWB1 version 1, as producers in the field write it.
DWB1_V1 = (
    _str("event_id", True), _num("ts", "<i8", True), _str("account_id", True), _str("api_key_id", True),
    _str("client_ip", True), _num("asn", "<u4"), _str("network_type"), _str("country"), _str("user_agent"),
    _str("endpoint", True), _str("model", True), _num("status", "<u2", True), _num("latency_ms", "<u4"),
    _num("prompt_tokens", "<u4", True), _num("completion_tokens", "<u4", True), _num("reasoning_tokens", "<u4"),
    _num("prompt_hash", "<u8"), _num("prompt_simhash", "<u8"), _str("topic"), _num("elicits_reasoning", "<u1"),
    _num("temperature", "<f4"), _num("top_p", "<f4"), _num("n", "<u2"), _num("max_tokens", "<u4"),
    _num("logprobs", "<u1"), _num("top_logprobs", "<u1"), _num("logit_bias_count", "<u2"), _num("stream", "<u1"),
    _str("payment_fingerprint"), _str("tls_fingerprint"), _str("http2_fingerprint"),
)


def test_derived_fields_are_dwb1_version_1() -> None:
    """A real compatibility check: producers in the field write DWB1 version 1 containers.

    FIELDS is derived from the contract (schemas/event.py), so a contract edit (a wider
    bound, a new type, a reordered or renamed field, a changed default) can silently
    change a column's name, order, kind, wire type or required flag. The reader rejects
    a known column with another kind or type code, and requires every required column,
    so such a change breaks every producer already deployed. If this fails, either undo
    the contract edit or ship it as a new container version (DWB2) beside this one.
    """
    assert [tuple(f) for f in FIELDS] == list(DWB1_V1)


@pytest.mark.parametrize(("name", "change", "expected"), [
    ("n", {"hi": 65_536}, "<u4"),  # a wider bound widens the wire type
    ("top_logprobs", {"lo": -1}, "<i1"),  # a negative bound makes it signed
    ("status", {"lo": None, "hi": None}, "<i8"),  # no bounds: the widest signed type, as ts
    ("prompt_hash", {"pattern": "^[0-9a-f]{8}$"}, "<u4"),  # 8 hex digits spell a 32-bit number
    ("country", {"pattern": "^[0-9a-f]{2}$"}, "<u1"),
    ("prompt_hash", {"pattern": "^[0-9A-F]{16}$"}, None),  # any other pattern: a dictionary string
])
def test_wire_type_follows_the_contract(name: str, change: dict[str, object], expected: str | None) -> None:
    spec = _spec(replace(RULE[name], **change))
    assert spec.dtype == (None if expected is None else np.dtype(expected))
    assert spec.kind == (KIND_DICT if expected is None else KIND_NUMERIC)

