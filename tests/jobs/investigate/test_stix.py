"""The STIX 2.1 bundle: valid for stix2-validator, indicators per kind, account ids only when asked."""

from __future__ import annotations

import json
import re
from datetime import datetime

import pytest
from stix2validator import ValidationOptions, validate_string

from jobs.investigate.result import Investigation
from jobs.investigate.stix import PER_KIND, SOLO_TEMPLATE_CALLS, build_bundle, bundle_json, pattern
from tests.support.demo_data import DemoData

pytestmark = [pytest.mark.clickhouse, pytest.mark.slow]


def _validate(text: str) -> None:
    result = validate_string(text, ValidationOptions(strict=True))
    assert result.is_valid, [str(e) for e in result.errors]


def test_cluster_bundle_validates_and_names_no_account(cluster_inv: Investigation) -> None:
    text = bundle_json(build_bundle(cluster_inv))
    _validate(text)
    objects = json.loads(text)["objects"]
    (campaign,) = [o for o in objects if o["type"] == "campaign"]
    indicators = {o["id"]: o for o in objects if o["type"] == "indicator"}
    patterns = " ".join(o["pattern"] for o in indicators.values())
    for prefix in ("[ipv4-addr:value = ", "[autonomous-system:number = ", "[x-distillwatch-payment:fingerprint = ",
                   "[x-distillwatch-prompt-template:simhash = ", "'User-Agent' = "):
        assert prefix in patterns, prefix
    relations = [o for o in objects if o["type"] == "relationship"]
    assert {r["source_ref"] for r in relations if r["relationship_type"] == "indicates"
            and r["target_ref"] == campaign["id"]} == set(indicators)
    sightings = {o["sighting_of_ref"]: o for o in objects if o["type"] == "sighting"}
    assert set(sightings) == set(indicators)
    assert all(s["first_seen"] <= s["last_seen"] for s in sightings.values())
    for page in cluster_inv.pages:
        assert page.account_id not in text


def test_include_accounts_names_them(cluster_inv: Investigation, account_inv: Investigation) -> None:
    text = bundle_json(build_bundle(cluster_inv, include_accounts=True))
    _validate(text)
    assert all(p.account_id in text for p in cluster_inv.pages)
    # An account outside any cluster is a campaign of one, named by a hash unless asked.
    (page,) = account_inv.pages
    anonymous = bundle_json(build_bundle(account_inv))
    _validate(anonymous)
    assert page.account_id not in anonymous and "single-account campaign" in anonymous


def test_patterns_quote_values() -> None:
    assert pattern("user_agent", "it's\\x") == \
        "[network-traffic:extensions.'http-request-ext'.request_header.'User-Agent' = 'it\\'s\\\\x']"
    assert pattern("ip_net", "2001:db8:1::/48") == "[ipv6-addr:value = '2001:db8:1::/48']"
    with pytest.raises(ValueError, match="country"):
        pattern("country", "US")


def test_indicators_carry_each_values_own_first_and_last_seen(demo_db: DemoData, cluster_inv: Investigation) -> None:
    members = [p.account_id for p in cluster_inv.pages]
    rows = demo_db.client.query(
        f"SELECT kind, value, min(first_seen), max(last_seen) FROM `{demo_db.database}`.account_entities_1h "
        "WHERE account_id IN {members:Array(String)} GROUP BY kind, value",
        parameters={"members": members}).result_rows
    own = {(k, v): (f.replace(tzinfo=None), last.replace(tzinfo=None)) for k, v, f, last in rows}
    objects = json.loads(bundle_json(build_bundle(cluster_inv)))["objects"]
    sightings = {o["sighting_of_ref"]: o for o in objects if o["type"] == "sighting"}
    by_kind: dict[str, int] = {}
    for ind in (o for o in objects if o["type"] == "indicator"):
        kind, value = _entity(ind["pattern"])
        by_kind[kind] = by_kind.get(kind, 0) + 1
        first, last = own[(kind, value)]
        seen = sightings[ind["id"]]
        assert _time(seen["first_seen"]) == first and _time(seen["last_seen"]) == last, (kind, value)
        assert _time(ind["valid_from"]) == first
    assert by_kind and max(by_kind.values()) <= PER_KIND
    # every template indicator is a template another member sent a near-duplicate of
    shared = {t.simhash for p in cluster_inv.pages for t in p.shared_templates if set(t.other_accounts) & set(members)}
    templates = {_entity(o["pattern"])[1] for o in objects if o["type"] == "indicator" and "prompt-template" in
                 o["pattern"]}
    assert templates and templates <= shared


def test_single_account_templates_need_repeated_use(account_inv: Investigation) -> None:
    objects = json.loads(bundle_json(build_bundle(account_inv)))["objects"]
    calls = {t.simhash: t.calls for p in account_inv.pages for t in p.shared_templates}
    for ind in (o for o in objects if o["type"] == "indicator" and "prompt-template" in o["pattern"]):
        assert calls[_entity(ind["pattern"])[1]] >= SOLO_TEMPLATE_CALLS


_KINDS = {"ipv4-addr": "ip_net", "ipv6-addr": "ip_net", "autonomous-system": "asn", "network-traffic": "user_agent",
          "x-distillwatch-payment": "payment", "x-distillwatch-prompt-template": "template"}


def _entity(stix_pattern: str) -> tuple[str, str]:
    found = re.match(r"^\[([a-z0-9-]+):(\S*) = '?(.*?)'?\]$", stix_pattern)
    assert found, stix_pattern
    # Client fingerprints share one custom object; the property names the kind.
    kind = found.group(2) if found.group(1) == "x-distillwatch-client" else _KINDS[found.group(1)]
    return kind, found.group(3).replace("\\'", "'").replace("\\\\", "\\")


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=None)
