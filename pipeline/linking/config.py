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
KINDS: Final = ("pay", "ip", "tpl", "asn", "ua", "tls", "h2", "sync")
FEATURE_KINDS: Final = {"pay": "pay", "ip24": "ip", "ip48": "ip", "tpl": "tpl", "asn": "asn", "ua": "ua",
                        "tls": "tls", "h2": "h2", "sync": "sync"}
FACTORS: Final = ("size", "member_scores", "link_strength", "volume")
# Kinds whose feature may become a *hub* past its cap (``hub_cap``) instead of popular: evidence that is
# specific to the accounts sharing it however many they are. A prompt template (near-duplicate prompts,
# Hamming-checked against the hub's centre) and a timing pattern (verified correlation, the platform's own
# curve left out) are; a popular card, network, ASN, user agent or client stack is a reseller, a cloud, an
# SDK or a browser build: shared by thousands of unrelated accounts, never a hub.
HUB_KINDS: Final = ("tpl", "sync")


class KindConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    weight: float = Field(gt=0, le=10, description="link evidence a shared feature of this kind carries")
    cap: int = Field(ge=2, le=4096, description="more accounts than this make a feature popular: no links")
    only_with: str | None = Field(default=None, description="evidence only for a pair also sharing this kind")
    hub_cap: int | None = Field(default=None, ge=3, le=1_000_000, description="past its cap a feature of this "
                                "kind becomes a hub uniting its members (N unions, no pairs) up to this many "
                                "members, then popular (None: popular at its cap); HUB_KINDS only")
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


class SyncWindow(BaseModel):
    """What a compared window is: its length, its boundaries, who is eligible, r and trend. The main window
    (``SyncConfig``) and the shorter one (``SyncConfig.early``) both declare it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    window_minutes: int = Field(ge=16, le=240, description="minutes compared: every boundary looks this far back")
    step_minutes: int = Field(ge=1, le=240, description="boundaries every this many minutes of event time")
    min_active_minutes: int = Field(ge=8, description="minutes of the window with calls an account needs")
    min_r: float = Field(gt=0, lt=1, description="Pearson r of a verified pair and of each member with its group")
    trend_minutes: int = Field(ge=2, description="curves slower than this (periods in minutes) are removed")
    min_known_minutes: int | None = Field(default=None, ge=8, description="an account first seen this long "
                                          "before a boundary is compared over the minutes known of it; 4 times a "
                                          "cron's period lets the clockwork test see it (None: the whole window)")

    @property
    def known_minutes(self) -> int:
        """How long before a boundary an account must have been first seen to be compared."""
        return self.window_minutes if self.min_known_minutes is None else self.min_known_minutes


class SyncScale(SyncWindow):
    """A shorter window compared too (``SyncConfig.early``), so a fleet links once it has moved together that
    long instead of a full ``window_minutes``; every other setting is the main window's."""


class SyncConfig(SyncWindow):
    """Cross-account timing correlation (``sync.py``, ``sync_tracker.py``): windows of calls per minute."""

    settle_minutes: int = Field(ge=0, le=60, description="a boundary is evaluated once a frame this much later came")
    min_group: int = Field(3, ge=2, description="accounts a group needs to be evidence: one pair at min_r happens "
                           "by chance among thousands compared (seen in make eval), three mutually far more rarely")
    clip_mads: float = Field(gt=0, le=20, description="deviations clipped at this many robust sigmas")
    periodic_share: float = Field(gt=0, le=1, description="a short period explaining this share of a curve is removed")
    step_share: float = Field(gt=0, le=1, description="a curve this much one level shift is left out")
    repeat_minutes: int = Field(ge=0, le=1440, description="a curve repeating this long ago (a schedule) is removed")
    repeat_r: float = Field(gt=0, le=1, description="... when it correlates at least this with that earlier curve")
    follow_r: float = Field(gt=0, lt=1, description="an account follows a group's curve at this r or more")
    popular_share: float = Field(gt=0, le=1, description="a curve followed by this share of the others: no evidence")
    bands: int = Field(ge=1, le=64, description="LSH bands of signed random projections")
    max_bucket: int = Field(ge=2, le=256, description="buckets up to this size give all pairs; bigger: a star")
    seed: int = Field(ge=0, description="seed of the random projection directions")
    early: SyncScale | None = Field(default=None, description="a shorter window compared too (None: only this one)")

    @model_validator(mode="after")
    def _consistent(self) -> SyncConfig:
        if self.early is not None:
            if self.early.window_minutes >= self.window_minutes:
                raise ValueError(f"early.window_minutes ({self.early.window_minutes}) must be under window_minutes "
                                 f"({self.window_minutes})")
            if self.step_minutes % self.early.step_minutes:
                raise ValueError(f"step_minutes ({self.step_minutes}) must be a multiple of early.step_minutes "
                                 f"({self.early.step_minutes}): one boundary clock for both windows")
            SyncConfig.model_validate({**self.model_dump(), **self.early.model_dump(), "early": None})
        if self.min_active_minutes > self.window_minutes:
            raise ValueError(f"min_active_minutes ({self.min_active_minutes}) exceeds window_minutes "
                             f"({self.window_minutes})")
        if not self.min_active_minutes <= self.known_minutes <= self.window_minutes:
            raise ValueError(f"min_known_minutes ({self.known_minutes}) must lie between min_active_minutes "
                             f"({self.min_active_minutes}) and window_minutes ({self.window_minutes})")
        if self.trend_minutes > 2 * self.window_minutes:  # up to 2x: only the ramp (a half cosine) is removed
            raise ValueError(f"trend_minutes ({self.trend_minutes}) exceeds twice window_minutes "
                             f"({self.window_minutes})")
        if self.step_minutes > self.window_minutes:
            raise ValueError(f"step_minutes ({self.step_minutes}) exceeds window_minutes ({self.window_minutes})")
        return self

    @property
    def ring_minutes(self) -> int:
        """Minutes each account's ring holds: a window, the period before it and the frames that may come
        before it is evaluated."""
        return self.repeat_minutes + self.window_minutes + self.settle_minutes + 1

    def scales(self) -> tuple[SyncConfig, ...]:
        """The windows compared, shortest first: ``early`` (this config with its settings) if set, then this one."""
        if self.early is None:
            return (self,)
        return self.model_copy(update={**self.early.model_dump(), "early": None}), self


class PooledConfig(BaseModel):
    """Pooled cluster evidence (``pooled.py``): the members' counters per minute, summed over a window."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    window_minutes: int = Field(60, ge=1, le=240, description="minutes summed (the scoring's calls_1h: 60)")
    history_minutes: int = Field(60, ge=0, le=1440, description="minutes kept before the window: how far back "
                                 "an alert time can find pooled evidence (a bounded run keeps at least a day)")


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
    sync: SyncConfig
    pooled: PooledConfig = PooledConfig()
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
            if kind.hub_cap is not None and name not in HUB_KINDS:
                raise ValueError(f"{name}.hub_cap: only {list(HUB_KINDS)} may become hubs (a popular {name} is "
                                 "shared by unrelated accounts)")
            if kind.hub_cap is not None and kind.hub_cap <= kind.cap:
                raise ValueError(f"{name}.hub_cap ({kind.hub_cap}) must exceed its cap ({kind.cap})")
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
