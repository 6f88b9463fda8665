"""Messages a real gateway sends now and then and the contract rejects, one per dead-letter reason.

The demo sends them after its traffic, so every run has dead letters and ``rejected_events``
rows to look at (and the tests of queries over them have data).
"""

from __future__ import annotations

import orjson

from pipeline.settings import Settings

_VALID = {"event_id": "bad-0", "ts": 1770888600000, "account_id": "org-malformed", "api_key_id": "k",
          "client_ip": "203.0.113.9", "endpoint": "/v1/chat/completions", "model": "m", "status": 200,
          "prompt_tokens": 10, "completion_tokens": 20}


def malformed_messages(settings: Settings) -> list[tuple[str, bytes]]:
    """(expected dead-letter reason, message value) pairs; the oversized one follows ``settings``."""
    return [
        ("invalid_json", b'{"event_id": "bad-1", "ts": '),
        ("not_an_object", b'["an", "array"]'),
        ("invalid_utf8", b'{"event_id": "bad-\xff"}'),
        ("schema_violation", orjson.dumps({**_VALID, "event_id": "bad-2", "prompt_tokens": -5})),
        ("schema_violation", orjson.dumps({k: v for k, v in _VALID.items() if k != "account_id"})),
        ("oversized", orjson.dumps({**_VALID, "event_id": "bad-3", "user_agent": "x" * settings.max_message_bytes})),
    ]
