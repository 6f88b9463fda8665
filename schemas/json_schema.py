"""Export the event contract (schemas.event.ApiCallEvent) as JSON Schema.

The exported file ``schemas/event.schema.json`` is committed; a test fails when it
differs from what the model generates, so the two never drift.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from schemas.event import ApiCallEvent

SCHEMA_PATH = Path(__file__).with_name("event.schema.json")


def event_json_schema() -> dict[str, Any]:
    schema = ApiCallEvent.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://distillwatch.dev/schemas/api-call-event-v1.json"
    schema["title"] = "API call event, version 1"
    # ts accepts RFC 3339 strings or epoch milliseconds on input (the model stores ms).
    schema["properties"]["ts"] = {
        "title": "Ts",
        "description": "event time: RFC 3339 with offset, or epoch milliseconds",
        "anyOf": [{"type": "string", "format": "date-time"}, {"type": "integer", "minimum": 0}],
    }
    # prompt_text is accepted on input (only to derive what the event lacks) and never stored.
    schema["properties"]["prompt_text"] = {
        "title": "Prompt Text",
        "description": "optional; derives missing prompt_hash/prompt_simhash/topic/elicits_reasoning, never stored",
        "anyOf": [{"type": "string", "maxLength": 32768}, {"type": "null"}],
        "default": None,
    }
    return schema


def write_event_schema(path: Path = SCHEMA_PATH) -> None:
    path.write_text(json.dumps(event_json_schema(), indent=2, sort_keys=True) + "\n")
