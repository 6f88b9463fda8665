"""The scoring configuration: signals and weights — a versioned JSON file, not code.

Each signal's strength is the product of ramps over named features (a ramp maps a
feature linearly from ``low`` → 0 to ``high`` → 1, clipped; ``low > high`` reverses
it), times the volume gate. Its contribution is ``weight × strength`` points; the
score is the sum, capped at 100. A bad file fails at start naming the field.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pipeline.config_file import load_model_file
from pipeline.scoring.features import FEATURES

DEFAULT_CONFIG = Path(__file__).with_name("scoring.v1.json")


class Ramp(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    low: float
    high: float

    @field_validator("high")
    @classmethod
    def _distinct(cls, high: float, info: object) -> float:
        low = getattr(info, "data", {}).get("low")
        if low is not None and low == high:
            raise ValueError("low and high must differ")
        return high


class Signal(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    weight: float = Field(ge=0, le=100)
    ramps: dict[str, Ramp] = Field(min_length=1)
    why: str = Field(min_length=1, description="what the signal means, shown in docs and alerts")

    @field_validator("ramps")
    @classmethod
    def _known_features(cls, ramps: dict[str, Ramp]) -> dict[str, Ramp]:
        unknown = sorted(set(ramps) - set(FEATURES))
        if unknown:
            raise ValueError(f"unknown features {unknown}; known: {sorted(FEATURES)}")
        return ramps


class ScoringConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    version: int = Field(ge=1)
    volume_gate: Ramp  # on calls_1h: a quiet account's signals count for less
    # On taken_1h (answer and reasoning tokens in the hour), once calls_1h reaches volume_gate.low: a few
    # calls that take a lot count in full as well (None: the calls alone gate).
    taken_gate: Ramp | None = None
    signals: dict[str, Signal] = Field(min_length=1)
    # Alert thresholds live in the alert rules (pipeline/alerting/rules.v1.yaml), not here.
    top_signals: int = Field(3, ge=1, le=20)
    min_contribution: float = Field(5.0, ge=0)


class ScoringConfigError(ValueError):
    pass


def load_scoring_config(path: Path | None = None) -> ScoringConfig:
    return load_model_file(ScoringConfig, path or DEFAULT_CONFIG, ScoringConfigError)
