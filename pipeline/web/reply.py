"""An HTTP answer as plain data, turned into a framework response by pipeline/app.py."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)

    def json(self) -> Any:
        """The body parsed as JSON (for tests and callers that read a reply back)."""
        return json.loads(self.body)


def json_reply(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Reply:
    """``value`` as a JSON body; values JSON cannot hold (datetimes, decimals, UUIDs) as text."""
    body = json.dumps(value, default=str).encode()
    return Reply(status, body, "application/json", dict(headers or {}))
