"""Versioned JSON config files (scoring, linking) read into pydantic models, failing at start
with a message that names the file and every bad field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def load_model_file(model: type[M], path: Path, error: type[ValueError]) -> M:
    """``model`` validated from the JSON file at ``path``; raises ``error`` naming the file and fields."""
    try:
        return model.model_validate(json.loads(path.read_text()))
    except (OSError, json.JSONDecodeError) as exc:
        raise error(f"{path}: {exc}") from None
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}" for e in exc.errors())
        raise error(f"{path}: {problems}") from None
