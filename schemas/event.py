"""API call event, version 1: the public input contract (../shared/EVENT_SCHEMA.md).

The model accepts exactly the documented fields and types, ignores unknown fields
(forward compatibility) and rejects anything else with a field-level reason.
Strict mode: JSON types are not coerced (``"412"`` is not an integer, ``1`` is not
a boolean), because a gateway that sends the wrong type has a bug worth seeing.

Where the contract gives no upper bound, the bound of the ClickHouse column that
stores the value is used (``schemas/tables.py``), so nothing overflows
downstream.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from schemas.prompt_derive import DERIVED_FIELDS, derive_from_prompt

UINT32_MAX = 2**32 - 1
UINT16_MAX = 2**16 - 1
# Event times outside this range are rejected: they are clock bugs, not traffic,
# and a far-future time would drag the watermark and make every later event late.
TS_MIN_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
TS_MAX_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

NetworkType = Literal["residential", "mobile", "business", "hosting", "vpn", "proxy", "tor", "unknown"]
NETWORK_TYPES: tuple[str, ...] = NetworkType.__args__  # type: ignore[attr-defined]

Hex64 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{16}$")]
Id64 = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Id128 = Annotated[str, StringConstraints(min_length=1, max_length=128)]
UInt32 = Annotated[int, Field(ge=0, le=UINT32_MAX)]


class ApiCallEvent(BaseModel):
    """One call to the LLM API, as the gateway reports it."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True, allow_inf_nan=False)

    schema_version: Literal[1] = 1
    event_id: Id64
    ts: int = Field(description="event time, epoch milliseconds (RFC 3339 accepted on input)")
    account_id: Id128
    api_key_id: Id128
    client_ip: str
    asn: UInt32 | None = None
    network_type: NetworkType = "unknown"
    country: Annotated[str, StringConstraints(pattern=r"^[A-Z]{2}$")] | None = None
    user_agent: Annotated[str, StringConstraints(max_length=512)] | None = None
    endpoint: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    model: Id128
    status: Annotated[int, Field(ge=100, le=599)]
    latency_ms: UInt32 | None = None
    prompt_tokens: UInt32
    completion_tokens: UInt32
    reasoning_tokens: UInt32 = 0
    prompt_hash: Hex64 | None = None
    prompt_simhash: Hex64 | None = None
    prompt_text: Annotated[str, StringConstraints(max_length=32_768)] | None = Field(default=None, exclude=True)
    topic: Annotated[str, StringConstraints(max_length=64)] | None = None
    elicits_reasoning: bool = False
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] | None = None
    top_p: Annotated[float, Field(ge=0.0, le=1.0)] | None = None
    n: Annotated[int, Field(ge=1, le=UINT16_MAX)] = 1
    max_tokens: Annotated[int, Field(ge=1, le=UINT32_MAX)] | None = None
    logprobs: bool = False
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    logit_bias_count: Annotated[int, Field(ge=0, le=UINT16_MAX)] = 0
    stream: bool = False
    payment_fingerprint: Annotated[str, StringConstraints(max_length=128)] | None = None
    # The client's TLS (JA3/JA4) and HTTP/2 SETTINGS fingerprints: per-account and linking evidence.
    tls_fingerprint: Annotated[str, StringConstraints(max_length=128)] | None = None
    http2_fingerprint: Annotated[str, StringConstraints(max_length=256)] | None = None

    @field_validator("ts", mode="before")
    @classmethod
    def _parse_ts(cls, value: object) -> int:
        if isinstance(value, bool):
            raise ValueError("must be an RFC 3339 string or epoch milliseconds, not a boolean")
        if isinstance(value, int):
            ms = value
        elif isinstance(value, str):
            ms = _rfc3339_to_ms(value)
        else:
            raise ValueError("must be an RFC 3339 string or epoch milliseconds")
        if not TS_MIN_MS <= ms < TS_MAX_MS:
            raise ValueError("event time outside 2000-01-01..2100-01-01")
        return ms

    @field_validator("client_ip")
    @classmethod
    def _check_ip(cls, value: str) -> str:
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise ValueError("not an IPv4 or IPv6 address") from None

    @model_validator(mode="after")
    def _derive_from_prompt(self) -> ApiCallEvent:
        # The text is only a carrier: derive the hashes, topic and elicits_reasoning
        # the event lacks (absent or null), then forget it so no prompt text is ever
        # stored or forwarded. Same rule as the DWB1 producer (schemas.prompt_derive).
        if self.prompt_text is not None:
            given = self.model_fields_set
            missing = [f for f in DERIVED_FIELDS if f not in given or getattr(self, f) is None]
            for name, value in derive_from_prompt(self.prompt_text, missing).items():
                object.__setattr__(self, name, value)
            object.__setattr__(self, "prompt_text", None)
        return self


def _rfc3339_to_ms(text: str) -> int:
    if len(text) > 40 or "T" not in text.upper():
        raise ValueError("not an RFC 3339 timestamp (expected e.g. 2026-02-12T09:30:00.123Z)")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("not an RFC 3339 timestamp (expected e.g. 2026-02-12T09:30:00.123Z)") from None
    if parsed.tzinfo is None:
        raise ValueError("RFC 3339 timestamp needs a UTC offset (Z or +hh:mm)")
    # Exact integer arithmetic: float timestamps round .123 to 122.99999.
    return (parsed - _EPOCH) // timedelta(milliseconds=1)
