"""The contract's rules as data, read from the model (``schemas.event.ApiCallEvent``).

The fast paths (the Numba scanner, the DWB1 column rules, the producer-side checks)
cannot run the model per event, so they apply its rules their own way. This module
is where they read those rules: per field, the bounds, pattern and choices of the
model's JSON Schema, and pydantic's own message for each way a field can fail, got
by validating a probe value with the model. Nothing here restates the contract.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from pydantic import ValidationError

from schemas.event import TS_MIN_MS, ApiCallEvent

# What the api_calls table stores for an absent optional field without a model
# default (schemas/tables.py); every other field stores its model default, 0 or "".
_STORED_IF_ABSENT: dict[str, object] = {"top_logprobs": -1, "temperature": math.nan, "top_p": math.nan}


@dataclass(frozen=True)
class FieldRule:
    """One field of the model: its JSON Schema rules and what is stored when it is absent."""

    name: str
    type: str  # JSON Schema type of the value: string, integer, number, boolean
    required: bool
    nullable: bool
    lo: int | float | None  # minimum (numbers) or minLength (strings)
    hi: int | float | None  # maximum (numbers) or maxLength (strings)
    pattern: str | None
    choices: tuple[object, ...] | None  # Literal values (enum or const)
    validator: str | None  # name of the model's field validator, if one judges the field
    carrier: bool  # excluded from the output: only carries what is derived from it (prompt_text)
    default: object  # the model's default; None when required or absent means null

    def stored_default(self, numeric: bool) -> object:
        """What the api_calls table stores when the field is absent or null (numeric: a number column)."""
        if self.default is not None:
            return self.default
        return _STORED_IF_ABSENT.get(self.name, 0 if numeric else "")


def _rule(name: str, prop: dict, required: bool, validators: dict[str, str]) -> FieldRule:
    options = prop.get("anyOf", [prop])
    typed = next(p for p in options if p.get("type") != "null")
    info = ApiCallEvent.model_fields[name]
    choices = tuple(typed["enum"]) if "enum" in typed else (typed["const"],) if "const" in typed else None
    return FieldRule(
        name=name, type=typed["type"], required=required, nullable=len(options) > 1,
        lo=typed.get("minimum", typed.get("minLength")), hi=typed.get("maximum", typed.get("maxLength")),
        pattern=typed.get("pattern"), choices=choices, validator=validators.get(name),
        carrier=bool(info.exclude), default=None if required else info.default,
    )


def _rules() -> tuple[FieldRule, ...]:
    schema = ApiCallEvent.model_json_schema()
    required = set(schema.get("required", ()))
    validators = {field: fn for fn, d in ApiCallEvent.__pydantic_decorators__.field_validators.items()
                  for field in d.info.fields}
    return tuple(_rule(name, schema["properties"][name], name in required, validators)
                 for name in ApiCallEvent.model_fields)


RULES = _rules()  # in model order: pydantic reports a message's first failing field in this order
RULE = {r.name: r for r in RULES}

def _text(r: FieldRule, length: int) -> str:
    if r.type != "string":
        raise TypeError(f"{r.name} is not a string")
    return "x" * length


# How a field can fail -> (pydantic's error type, a JSON value that fails that way).
_PROBES: dict[str, tuple[str, Callable[[FieldRule], object]]] = {
    "int_type": ("int_type", lambda r: "1"),
    "float_type": ("float_type", lambda r: "1"),
    "bool_type": ("bool_type", lambda r: 1),
    "str_type": ("string_type", lambda r: 1),
    "ge": ("greater_than_equal", lambda r: r.lo - 1),
    "le": ("less_than_equal", lambda r: r.hi + 1),
    "too_short": ("string_too_short", lambda r: _text(r, r.lo - 1)),
    "too_long": ("string_too_long", lambda r: _text(r, r.hi + 1)),
    "pattern": ("string_pattern_mismatch", lambda r: "!"),
    "literal": ("literal_error", lambda r: "!" if isinstance(r.choices[0], str) else r.choices[0] + 1),
    "ts_type": ("value_error", lambda r: []),
    "ts_bool": ("value_error", lambda r: True),
    "ts_range": ("value_error", lambda r: TS_MIN_MS - 1),
    "ts_text": ("value_error", lambda r: "!"),
    "ip": ("value_error", lambda r: "!"),
    "finite": ("finite_number", lambda r: math.nan),
}
FAILURES = ("missing", *_PROBES)


@cache
def message(name: str, failure: str) -> str:
    """pydantic's message when field ``name`` fails as ``failure`` (one of FAILURES), from the model itself."""
    if failure == "missing":
        expected, payload = "missing", {}
    else:
        expected, probe = _PROBES[failure]
        try:
            payload = {name: probe(RULE[name])}
        except TypeError:  # no such bound, or not a string: the field cannot fail that way
            raise ValueError(f"field {name!r} does not fail as {failure!r} for the model") from None
    try:
        ApiCallEvent.model_validate(payload, strict=True)  # strict Python input: as the JSON path judges
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            if err["loc"] == (name,) and err["type"] == expected:
                return err["msg"]
    raise ValueError(f"field {name!r} does not fail as {failure!r} for the model")
