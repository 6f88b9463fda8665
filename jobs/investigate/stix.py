"""A STIX 2.1 bundle of a campaign's indicators (``investigate --stix``), to share with other providers.

One Campaign, one Identity (distillwatch, the producer), and per value the campaign used an
Indicator (``indicates`` the campaign) with a Sighting of the value's own first and last time
seen and call count. Only evidence of the campaign (``SOLO_TEMPLATE_CALLS``, ``PER_KIND``), no
account id without ``include_accounts``. The patterns of each kind, what is left out and why:
docs/forensics.md ("STIX 2.1 indicators").
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import stix2

from jobs.investigate.result import Investigation, SharedTemplate
from pipeline.linking.config import LinkingConfig, load_linking_config

PRODUCER: Final = "distillwatch"
PER_KIND: Final = 25  # indicators per kind, busiest first: a bundle an analyst can review
# A campaign of one has no fellow member to share a template with: its own template counts as evidence
# when it is the account's habit (20 calls), not a prompt it sent once or twice.
SOLO_TEMPLATE_CALLS: Final = 20
# entity kind -> linking kind, for the confidence
_LINK_KIND: Final = {"ip_net": "ip", "asn": "asn", "user_agent": "ua", "payment": "pay", "template": "tpl",
                     "tls_fingerprint": "tls", "http2_fingerprint": "h2"}
_WHAT: Final = {"ip_net": "IP network", "asn": "autonomous system", "user_agent": "user agent",
                "payment": "payment card fingerprint", "template": "prompt-template SimHash",
                "tls_fingerprint": "TLS client fingerprint", "http2_fingerprint": "HTTP/2 client fingerprint"}


@dataclass
class _Seen:
    first: datetime
    last: datetime
    calls: int

    def add(self, first: datetime, last: datetime, calls: int) -> None:
        self.first, self.last, self.calls = min(self.first, first), max(self.last, last), self.calls + calls


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def pattern(kind: str, value: str) -> str:
    """The STIX pattern matching one entity value; raises ValueError for a kind that has none."""
    if kind == "ip_net":
        return f"[{'ipv6' if ':' in value else 'ipv4'}-addr:value = '{_quote(value)}']"
    if kind == "asn":
        return f"[autonomous-system:number = {int(value)}]"
    if kind == "user_agent":
        return f"[network-traffic:extensions.'http-request-ext'.request_header.'User-Agent' = '{_quote(value)}']"
    if kind == "payment":
        return f"[x-distillwatch-payment:fingerprint = '{_quote(value)}']"
    if kind == "template":
        return f"[x-distillwatch-prompt-template:simhash = '{_quote(value)}']"
    if kind in ("tls_fingerprint", "http2_fingerprint"):  # STIX 2.1 has no object for JA3/JA4 or HTTP/2
        return f"[x-distillwatch-client:{kind} = '{_quote(value)}']"
    raise ValueError(f"no STIX pattern for entity kind {kind!r}")


def _campaign_template(template: SharedTemplate, members: set[str]) -> bool:
    """A SimHash is evidence of the campaign when another member sent a near-duplicate of it, or, for a
    campaign of one, when the account sent it at least SOLO_TEMPLATE_CALLS times (templates other accounts
    also sent once or twice are what every user of a common prompt shares)."""
    if len(members) > 1:
        return bool(members & set(template.other_accounts))
    return template.calls >= SOLO_TEMPLATE_CALLS


def _observed(inv: Investigation) -> dict[tuple[str, str], _Seen]:
    """Every (kind, value) the campaign used, with its own first/last seen and calls over the members;
    at most PER_KIND per kind, busiest first."""
    seen: dict[tuple[str, str], _Seen] = {}
    members = {p.account_id for p in inv.pages}

    def note(kind: str, value: str, first: datetime, last: datetime, calls: int) -> None:
        if (kind, value) in seen:
            seen[(kind, value)].add(first, last, calls)
        else:
            seen[(kind, value)] = _Seen(first, last, calls)

    for page in inv.pages:
        for e in page.entities:
            if e.kind in _LINK_KIND:
                note(e.kind, e.value, e.first_seen, e.last_seen, e.calls)
        for t in page.shared_templates:
            if t.first_seen and t.last_seen and _campaign_template(t, members):
                note("template", t.simhash, t.first_seen, t.last_seen, t.calls)
    for e in inv.campaign_values:  # a value's own span over all members, not only those that listed it
        if (e.kind, e.value) in seen:
            seen[(e.kind, e.value)] = _Seen(e.first_seen, e.last_seen, e.calls)
    by_kind: dict[str, list[tuple[tuple[str, str], _Seen]]] = {}
    for key, s in sorted(seen.items(), key=lambda kv: (-kv[1].calls, kv[0])):
        by_kind.setdefault(key[0], []).append((key, s))
    return {key: s for rows in by_kind.values() for key, s in rows[:PER_KIND]}


def _campaign_name(inv: Investigation, include_accounts: bool) -> str:
    if inv.target_kind == "cluster":
        return f"{PRODUCER} campaign {inv.target}"
    if include_accounts:
        return f"{PRODUCER} single-account campaign {inv.target}"
    return f"{PRODUCER} single-account campaign {hashlib.sha256(inv.target.encode()).hexdigest()[:8]}"


def build_bundle(inv: Investigation, *, include_accounts: bool = False,
                 linking: LinkingConfig | None = None) -> stix2.Bundle:
    """The bundle for ``inv`` (a cluster, or an account as a campaign of one)."""
    config = linking or load_linking_config()
    firsts = [p.first_seen for p in inv.pages if p.first_seen]
    lasts = [p.last_seen for p in inv.pages if p.last_seen]
    identity = stix2.Identity(name=PRODUCER, identity_class="system",
                              description="model-extraction (distillation) detection on an LLM API")
    h = inv.harvest
    description = (f"Model-extraction (distillation) campaign over {len(inv.pages)} account(s): "
                   f"{h.total:,} output tokens received ({h.completion_tokens:,} completion, "
                   f"{h.reasoning_tokens:,} reasoning)"
                   + (f", {h.before_alert:,} of them before the first alert at {h.first_alert.isoformat()}"
                      if h.first_alert else "") + ".")
    if include_accounts:
        description += " Accounts: " + ", ".join(p.account_id for p in inv.pages) + "."
    campaign = stix2.Campaign(
        name=_campaign_name(inv, include_accounts), description=description, created_by_ref=identity,
        objective="harvest model outputs (completions and reasoning) to train another model",
        **({"first_seen": min(firsts), "last_seen": max(lasts)} if firsts and lasts else {}),
    )
    objects: list[object] = [identity, campaign]
    for (kind, value), seen in sorted(_observed(inv).items(), key=lambda kv: (kv[0][0], -kv[1].calls, kv[0][1])):
        indicator = stix2.Indicator(
            name=f"{_WHAT[kind]} used by {campaign.name}", pattern=pattern(kind, value), pattern_type="stix",
            valid_from=seen.first, indicator_types=["malicious-activity"], created_by_ref=identity,
            confidence=min(100, round(config.weight(_LINK_KIND[kind]) * 100)),
            description=f"{_WHAT[kind]} seen from {seen.first.isoformat()} to {seen.last.isoformat()} "
                        f"in {seen.calls:,} calls of the campaign",
        )
        objects += [
            indicator,
            stix2.Relationship(indicator, "indicates", campaign, created_by_ref=identity),
            stix2.Sighting(sighting_of_ref=indicator, first_seen=seen.first, last_seen=max(seen.last, seen.first),
                           count=min(seen.calls, 999_999_999), created_by_ref=identity),
        ]
    return stix2.Bundle(objects=objects)


def bundle_json(bundle: stix2.Bundle) -> str:
    """The bundle as indented JSON (stix2's own ``pretty=True`` takes seconds per hundred objects)."""
    return json.dumps(json.loads(bundle.serialize()), indent=2) + "\n"
