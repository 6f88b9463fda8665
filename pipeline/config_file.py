"""Versioned config files (scoring and linking JSON, alert rules and allow-list YAML) read into
pydantic models, failing at start with a message that names the file and every bad field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def load_model_file(model: type[M], path: Path, error: type[ValueError]) -> M:
    """``model`` validated from the file at ``path`` (YAML if it ends in .yaml/.yml, else JSON);
    raises ``error`` naming the file and fields (``rules[2].for: ...``)."""
    try:
        text = path.read_text()
        data = yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
        return model.model_validate(data)
    except (OSError, json.JSONDecodeError, yaml.YAMLError) as exc:
        raise error(f"{path}: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(f"{field_path(e['loc']) or 'file'}: {e['msg']}" for e in exc.errors())
        raise error(f"{path}: {problems}") from None


def field_path(loc: tuple[Any, ...]) -> str:
    """pydantic's error location as a reader writes it: ``rules[2].for``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def repeated(values: list[str]) -> list[str]:
    """The values that occur more than once, sorted: names and ids in a config file must be unique."""
    return sorted({v for v in values if values.count(v) > 1})
