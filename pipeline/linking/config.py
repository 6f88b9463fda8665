"""The linking configuration: feature kinds, weights, caps and the cluster score — a versioned JSON file.

A pair of accounts is *linked* when the weights of the feature kinds they share
(each kind counted once, popular features excluded; a kind ``only_with`` another
only beside it) sum to ``link_threshold``
or more. Linked pairs form clusters; a cluster's score is the sum of four factor
points (their weights sum to 100); when a cluster alerts is a cluster rule's condition
(pipeline/alerting/rules.v1.yaml). A bad file fails at start with a message
naming the field (``LinkingConfigError``), never later in a stage.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Final

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipeline.config_file import load_model_file

DEFAULT_CONFIG: Final = Path(__file__).with_name("linking.v1.json")

# Feature kinds the file must weigh, and the feature prefixes of each: an IPv4 /24 and an
# IPv6 /48 are both "the same network", so a pair sharing both counts that evidence once.
KINDS: Final = ("pay", "ip", "tpl", "asn", "ua", "tls", "h2")
FEATURE_KINDS: Final = {"pay": "pay", "ip24": "ip", "ip48": "ip", "tpl": "tpl", "asn": "asn", "ua": "ua",
                        "tls": "tls", "h2": "h2"}
FACTORS: Final = ("size", "member_scores", "link_strength", "volume")


class KindConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    weight: float = Field(gt=0, le=10, description="link evidence a shared feature of this kind carries")
    cap: int = Field(ge=2, le=4096, description="more accounts than this make a feature popular: no links")
    only_with: str | None = Field(default=None, description="evidence only for a pair also sharing this kind")
    why: str = Field(min_length=1)


class TemplateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    bands: int = Field(ge=1, le=64)
    band_bits: int = Field(ge=1, le=32)
    max_hamming: int = Field(ge=0, le=64, description="near-duplicate: simhashes at most this many bits apart")
    carry_events: int = Field(ge=0, le=1_000_000, description="recent simhashes kept to confirm the next batch")

    @model_validator(mode="after")
    def _cover_64_bits(self) -> TemplateConfig:
        if self.bands * self.band_bits != 64:
            raise ValueError(f"bands × band_bits must be 64 (got {self.bands} × {self.band_bits})")
        return self


class Factor(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    weight: float = Field(ge=0, le=100)
    full_at: float = Field(gt=0, description="the input value at which the factor gives its full weight")


class ClusterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    max_listed_features: int = Field(ge=1, le=100)
    factors: dict[str, Factor]

    @field_validator("factors")
    @classmethod
    def _all_factors(cls, factors: dict[str, Factor]) -> dict[str, Factor]:
        if set(factors) != set(FACTORS):
            raise ValueError(f"expected exactly the factors {list(FACTORS)}, got {sorted(factors)}")
        total = sum(f.weight for f in factors.values())
        if abs(total - 100.0) > 1e-6:
            raise ValueError(f"factor weights must sum to 100 (got {total:g})")
        return factors


class LinkingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    version: int = Field(ge=1)
    kinds: dict[str, KindConfig]
    link_threshold: float = Field(gt=0)
    template: TemplateConfig
    cluster: ClusterConfig

    @field_validator("kinds")
    @classmethod
    def _all_kinds(cls, kinds: dict[str, KindConfig]) -> dict[str, KindConfig]:
        missing = [k for k in KINDS if k not in kinds]
        unknown = sorted(set(kinds) - set(KINDS))
        if missing or unknown:
            raise ValueError(f"expected exactly the kinds {list(KINDS)}: missing {missing}, unknown {unknown}")
        for name, kind in kinds.items():
            if kind.only_with is not None and (kind.only_with not in KINDS or kind.only_with == name):
                raise ValueError(f"{name}.only_with must name another kind of {list(KINDS)}, got {kind.only_with!r}")
        return kinds

    def weight(self, kind: str) -> float:
        return self.kinds[kind].weight

    def points(self, kinds: Collection[str]) -> dict[str, float]:
        """The points each of the ``kinds`` a pair shares gives it (a kind ``only_with`` another counts beside it)."""
        return {k: self.kinds[k].weight for k in kinds if self.kinds[k].only_with in (None, *kinds)}

    def strength(self, kinds: Collection[str]) -> float:
        return sum(self.points(kinds).values())


class LinkingConfigError(ValueError):
    pass


def load_linking_config(path: Path | None = None) -> LinkingConfig:
    """Read and validate the file (default ``linking.v1.json``); raises LinkingConfigError naming the field."""
    return load_model_file(LinkingConfig, path or DEFAULT_CONFIG, LinkingConfigError)
