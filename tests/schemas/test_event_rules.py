"""The contract's rules as data follow the model, and their messages are pydantic's for JSON input."""

from __future__ import annotations

import math

import orjson
import pytest
from pydantic import ValidationError

from schemas.event import ApiCallEvent
from schemas.event_rules import _PROBES, FAILURES, RULE, RULES, message


def _json_message(name: str, value: object) -> str:
    with pytest.raises(ValidationError) as caught:
        ApiCallEvent.model_validate_json(orjson.dumps({name: value}))
    return next(e["msg"] for e in caught.value.errors(include_url=False) if e["loc"] == (name,))


def test_every_message_is_what_the_model_says_for_json_input() -> None:
    """The fast paths judge JSON; the messages are got from Python input, so both must agree."""
    checked = 0
    for rule in RULES:
        for failure in FAILURES:
            try:
                text = message(rule.name, failure)
            except ValueError:
                continue  # the field cannot fail that way
            if failure == "missing":
                continue  # nothing to send
            value = _PROBES[failure][1](rule)
            if isinstance(value, float) and math.isnan(value):
                continue  # JSON has no NaN
            assert text == _json_message(rule.name, value), (rule.name, failure)
            checked += 1
    assert checked > 60


@pytest.mark.parametrize(("name", "failure", "text"), [
    ("status", "ge", "Input should be greater than or equal to 100"),
    ("temperature", "le", "Input should be less than or equal to 2"),
    ("event_id", "too_short", "String should have at least 1 character"),
    ("user_agent", "too_long", "String should have at most 512 characters"),
    ("schema_version", "literal", "Input should be 1"),
    ("client_ip", "ip", "Value error, not an IPv4 or IPv6 address"),
    ("endpoint", "missing", "Field required"),
])
def test_messages_carry_the_models_bounds(name: str, failure: str, text: str) -> None:
    assert message(name, failure) == text


def test_a_field_that_cannot_fail_that_way_is_an_error() -> None:
    with pytest.raises(ValueError, match="does not fail"):
        message("user_agent", "missing")


def test_rules_follow_the_model() -> None:
    assert tuple(RULE) == tuple(ApiCallEvent.model_fields)
    assert {r.name for r in RULES if r.required} == set(ApiCallEvent.model_json_schema()["required"])
    assert RULE["network_type"].choices[-1] == RULE["network_type"].default == "unknown"  # type: ignore[index]
    assert (RULE["ts"].validator, RULE["client_ip"].validator) == ("_parse_ts", "_check_ip")
    assert RULE["prompt_text"].carrier and not RULE["prompt_hash"].carrier
    assert RULE["top_logprobs"].stored_default(numeric=True) == -1 and math.isnan(RULE["top_p"].stored_default(True))
    assert RULE["n"].stored_default(numeric=True) == 1 and RULE["topic"].stored_default(numeric=False) == ""
