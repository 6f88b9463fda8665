"""The STIX 2.1 bundle: valid for stix2-validator, indicators per kind, account ids only when asked."""

from __future__ import annotations

import json

import pytest
from stix2validator import ValidationOptions, validate_string

from jobs.investigate.result import Investigation
from jobs.investigate.stix import build_bundle, bundle_json, pattern

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
