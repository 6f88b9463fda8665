"""What ``investigate`` found: plain dataclasses, the one input of every renderer (text, JSON, HTML, STIX).

Times are timezone-aware UTC datetimes; ``to_dict``/``from_dict`` give and read the
JSON form (ISO 8601 strings), so ``--json`` output loads back into the same object.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any


@dataclass(frozen=True)
class TrafficBucket:
    """Calls and tokens of one account in one hour (or one day, for ``days``)."""

    start: datetime
    calls: int
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int


@dataclass(frozen=True)
class ScorePoint:
    """The highest extraction score in a time bucket and the top signals of that minute."""

    start: datetime
    max_score: float
    top_signals: list[str]


@dataclass(frozen=True)
class Alert:
    """One alert: ``minute`` is the scored minute, ``fired_ts`` its end (when the rule fired).

    ``mode`` page | monitor; ``suppressed_by`` '' when it paged, else what silenced it.
    Only a page that was not suppressed counts as the first alert (``Harvest.first_alert``).
    """

    alert_id: str
    fired_ts: datetime
    minute: datetime
    rule: str
    severity: str
    score: float
    signals: list[str]
    signal_points: list[float]
    mode: str = "page"
    suppressed_by: str = ""

    @property
    def paged(self) -> bool:
        return self.mode == "page" and not self.suppressed_by


@dataclass(frozen=True)
class Entity:
    """One value of a kind (api_key, ip_net, asn, network_type, country, user_agent, payment, model, template)."""

    kind: str
    value: str
    calls: int
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True)
class SharedTemplate:
    """One of the account's prompt SimHashes with near-duplicates sent by other accounts."""

    simhash: str
    calls: int
    other_accounts: list[str]  # sorted; at most MAX_LISTED
    other_account_count: int
    other_calls: int
    min_distance: int  # Hamming bits to the nearest other account's SimHash
    first_seen: datetime | None = None  # this SimHash's own first/last call by the account
    last_seen: datetime | None = None


@dataclass(frozen=True)
class ModelUse:
    model: str
    calls: int
    share: float  # of the account's calls in the period
    released: datetime | None  # first call by anyone in the whole dataset
    newly_released: bool
    share_since_release: float  # of the account's calls from the release hour on


@dataclass(frozen=True)
class Harvest:
    """Output tokens received: in the period, and before the first alert (``first_alert``; None: never)."""

    completion_tokens: int
    reasoning_tokens: int
    first_alert: datetime | None
    completion_before_alert: int
    reasoning_before_alert: int

    @property
    def total(self) -> int:
        return self.completion_tokens + self.reasoning_tokens

    @property
    def before_alert(self) -> int:
        return self.completion_before_alert + self.reasoning_before_alert


@dataclass(frozen=True)
class Feedback:
    recorded_at: datetime
    rule: str
    verdict: str
    reason: str
    analyst: str
    suppress_until: datetime


@dataclass(frozen=True)
class AccountPage:
    account_id: str
    first_seen: datetime | None
    last_seen: datetime | None
    calls: int
    days: list[TrafficBucket]
    hours: list[TrafficBucket]
    scores: list[ScorePoint]
    score_bucket_s: int
    alerts: list[Alert]
    entities: list[Entity]  # NETWORK_KINDS, busiest first per kind
    shared_templates: list[SharedTemplate]
    models: list[ModelUse]
    harvest: Harvest
    feedback: list[Feedback] | None  # None: the alert_feedback table does not exist
    cluster_id: str | None


@dataclass(frozen=True)
class LinkFeature:
    kind: str  # pay, ip, tpl, asn, ua (pipeline/linking)
    feature: str  # as in clusters.shared_features: pay:…, ip24:…, asn:…, ua:…, tpl:…
    label: str  # readable value: the card fingerprint, network, ASN, user agent, SimHash pair
    popular: bool  # carried by more accounts than the kind's cap: no evidence


@dataclass(frozen=True)
class Link:
    """Why two members are linked: the kinds they share and the points (kind weights, each kind once)."""

    a: str
    b: str
    features: list[LinkFeature]
    points: dict[str, float]  # kind -> weight
    strength: float
    linked: bool  # strength >= link_threshold


@dataclass(frozen=True)
class ClusterVersion:
    version: int
    updated_ts: datetime
    size: int
    score: float
    active: bool


@dataclass(frozen=True)
class ClusterInfo:
    cluster_id: str
    active: bool
    members: list[str]
    score: float
    shared_features: list[str]
    factors: dict[str, float]
    first_seen: datetime
    updated: datetime
    history: list[ClusterVersion]
    links: list[Link]
    link_threshold: float
    campaign_threshold: float | None = None  # score at which the cluster rule pages (None: no such rule)

    @property
    def is_campaign(self) -> bool:
        """The cluster rule would alert on this score; below it the members are only linked accounts."""
        return self.campaign_threshold is not None and self.score >= self.campaign_threshold


@dataclass(frozen=True)
class Investigation:
    target: str
    target_kind: str  # account | cluster
    database: str
    since: datetime | None
    generated_at: datetime
    cluster: ClusterInfo | None
    pages: list[AccountPage]
    harvest: Harvest  # the whole target: the account, or every member (before the campaign's first alert)
    new_models: dict[str, datetime] = field(default_factory=dict)  # model -> release (first call in the data)
    # A campaign's listed values (members' network values, shared templates) over all its members.
    campaign_values: list[Entity] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return _encode(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Investigation:
        return _decode(cls, data)


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    return value


def _decode(tp: Any, value: Any) -> Any:
    """Rebuild ``tp`` from its ``_encode`` form, driven by the dataclasses' type hints."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        return _decode(next(a for a in typing.get_args(tp) if a is not type(None)), value)
    if origin is list:
        (item,) = typing.get_args(tp)
        return [_decode(item, v) for v in value]
    if origin is dict:
        _, item = typing.get_args(tp)
        return {k: _decode(item, v) for k, v in value.items()}
    if tp is datetime:
        return datetime.fromisoformat(value)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        cls: Any = tp
        return cls(**{f.name: _decode(hints[f.name], value[f.name]) for f in dataclasses.fields(tp)})
    if tp is float:
        return float(value)
    return value
