"""Rejected input: why a message could not become an event, with its original bytes."""

from __future__ import annotations

from dataclasses import dataclass

# Reason codes (stable: they are stored in ClickHouse and in dead-letter headers).
OVERSIZED = "oversized"
INVALID_UTF8 = "invalid_utf8"
INVALID_JSON = "invalid_json"
NOT_AN_OBJECT = "not_an_object"
SCHEMA = "schema_violation"
TS_IN_FUTURE = "ts_in_future"
INVALID_BATCH = "invalid_batch"  # a batch container (schemas/batch_encoding.md) that cannot be read at all
REASONS = (OVERSIZED, INVALID_UTF8, INVALID_JSON, NOT_AN_OBJECT, SCHEMA, TS_IN_FUTURE, INVALID_BATCH)


@dataclass(frozen=True)
class Rejected:
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    reason: str  # one of REASONS
    field: str  # dotted path of the offending field, "" when not about one field
    detail: str  # human-readable explanation

    def headers(self) -> list[tuple[str, bytes]]:
        """Dead-letter message headers: enough to find and fix the producer."""
        return [
            ("dw-reason", self.reason.encode()),
            ("dw-field", self.field.encode()),
            ("dw-detail", self.detail.encode()[:1024]),
            ("dw-source-partition", str(self.partition).encode()),
            ("dw-source-offset", str(self.offset).encode()),
        ]
