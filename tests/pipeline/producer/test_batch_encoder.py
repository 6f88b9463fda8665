"""The producer's checks report an integer that does not fit its wire type as the contract model would."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.decode.batch_format import FIELDS
from pipeline.producer.batch_encoder import InvalidEventError, encode_columns, encode_events, validate_event
from schemas.event_rules import RULE, message
from tests.support.events import MINIMAL


def _detail(call: object, *args: object, **kwargs: object) -> str:
    with pytest.raises(InvalidEventError) as caught:
        call(*args, **kwargs)  # type: ignore[operator]
    return caught.value.detail


@pytest.mark.parametrize(("field", "value"), [
    ("status", 70_000),  # beyond uint16 and beyond the contract's 599
    ("status", -5),
    ("top_logprobs", 300),  # beyond uint8
    ("prompt_tokens", 2**40),  # beyond uint32
    ("prompt_tokens", 2**70),  # beyond int64
    ("asn", -(2**70)),
    ("ts", 2**63),  # beyond int64: the time range's message
    ("ts", -(2**70)),
])
def test_a_value_beyond_its_wire_type_gets_the_models_message(field: str, value: int) -> None:
    event = {**MINIMAL, field: value}
    expected = _detail(validate_event, event)
    for validate in (True, False):  # not encodable: refused even without the contract check
        assert _detail(encode_events, [event], validate=validate) == expected


def test_an_unsigned_array_beyond_int64_gets_the_models_message() -> None:
    columns = {name: [value] for name, value in MINIMAL.items()}
    for field in ("completion_tokens", "ts"):
        big = np.array([2**63], np.uint64)
        assert _detail(encode_columns, {**columns, field: big}) == _detail(
            validate_event, {**MINIMAL, field: 2**63})


def test_every_integer_wire_type_holds_its_fields_contract_range() -> None:
    """Why a value that does not fit the wire can be reported with the contract's bound."""
    for spec in FIELDS:
        rule = RULE[spec.name]
        if rule.type != "integer" or rule.validator is not None:
            continue  # ts: its validator's range, checked against int64 by the decoder's tests
        assert spec.dtype is not None and rule.lo is not None and rule.hi is not None, spec.name
        info = np.iinfo(spec.dtype)
        assert info.min <= rule.lo and rule.hi <= info.max, spec.name
        assert message(spec.name, "ge") and message(spec.name, "le")
