from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline.alerting.engine import AlertSetup
from pipeline.alerting.rules import load_rules
from pipeline.linking.cluster_outputs import RULE_CLUSTER, ClusterTracker
from pipeline.linking.clusters import (
    Cluster,
    cluster_id,
    crossing_ts,
    describe_cluster,
    member_aggregates,
    pair_strength,
    score_cluster,
)
from pipeline.linking.config import LinkingConfig
from pipeline.linking.link_state import LinkState
from tests.support.alerting import rules_doc, write_yaml
from tests.support.link_builders import share


@pytest.mark.parametrize(("features", "linked"), [
    (["pay:pf_1"], True),
    (["ip24:1.2.3", "tpl:0:abcd"], True),
    (["ip24:1.2.3", "asn:1", "ua:ff"], False),
    (["asn:1", "ua:ff"], False),
    (["tpl:0:abcd", "tpl:1:0123", "tpl:2:4567"], False),  # one kind counts once
    (["ip24:1.2.3", "ip48:2001:db8:0", "asn:1"], False),  # an IPv4 /24 and an IPv6 /48 are one kind
])
def test_pair_strength_counts_each_kind_once(config: LinkingConfig, features: list[str], linked: bool) -> None:
    assert (pair_strength(features, config) >= config.link_threshold) is linked


def test_crossing_ts_is_when_the_evidence_first_sufficed(config: LinkingConfig) -> None:
    assert crossing_ts({"asn:1": 5, "ip24:1.2.3": 10, "tpl:0:ab": 30, "pay:x": 40}, config) == 30
    assert crossing_ts({"asn:1": 5, "ua:1": 10}, config) is None


def test_cluster_id_depends_on_the_smallest_member_only() -> None:
    cid = cluster_id({"org-b", "org-a", "org-c"})
    assert re.fullmatch(r"c-[0-9a-f]{8}", cid)
    assert cid == cluster_id(["org-a", "org-z"]) != cluster_id(["org-b", "org-c"])


def test_score_grows_with_size_member_scores_and_links(config: LinkingConfig) -> None:
    c = config.cluster
    small = score_cluster(2, [10, 10], [1.0], 100, c)
    assert 0 <= small.score < 40
    assert small.score == pytest.approx(sum(small.factors.values()), abs=0.01)
    assert score_cluster(8, [10] * 8, [1.0] * 7, 100, c).score > small.score
    assert score_cluster(2, [60, 60], [1.0], 100, c).score > small.score
    assert score_cluster(2, [10, 10], [2.0], 100, c).score > small.score
    full = score_cluster(50, [100] * 50, [5.0] * 60, 10**9, c)
    assert full.score == 100.0 and full.members["member_top_score"] == 100.0


def test_member_aggregates_top_three_mean_and_max(config: LinkingConfig) -> None:
    # Half a fleet asleep in another time zone does not hold the awake, extracting half back (top three) ...
    assert member_aggregates([80, 70, 60, 5, 5, 5]) == {"member_top_score": 70.0, "member_mean_score": 37.5,
                                                        "member_max_score": 80.0}
    assert member_aggregates([90, 30])["member_top_score"] == 40.0  # missing members count 0
    assert member_aggregates([]) == {"member_top_score": 0.0, "member_mean_score": 0.0, "member_max_score": 0.0}
    scores = [40.0, 20.0, 10.0]
    for extra in ([0.0], [0.0, 5.0], [50.0]):  # neither a new member nor a rising score lowers it
        assert member_aggregates(scores + extra)["member_top_score"] >= member_aggregates(scores)["member_top_score"]
    # ... while a reseller's quiet customers keep the plain mean low whatever its few extractors do.
    assert member_aggregates([100.0] * 3 + [10.0] * 57)["member_mean_score"] == pytest.approx(14.5)
    company = score_cluster(12, [15] + [5] * 11, [1.0] * 11, 5000, config.cluster)  # one busy org, quiet siblings
    assert company.members["member_top_score"] == pytest.approx(25 / 3, abs=0.01)


def no_times(cluster: object, rule: object) -> dict[str, int]:
    return {}  # qualifying times unknown: alerts fall back to the cluster's updated_ts


def _describe(config: LinkingConfig, features: dict[str, dict[str, object]], members: set[str],
              accounts: dict[str, dict[str, float]]) -> Cluster:
    linked = LinkState(features, config).pair_evidence(members)
    return describe_cluster(members, linked, accounts, config)


def test_describe_cluster_explains_its_score(config: LinkingConfig) -> None:
    features: dict[str, dict[str, object]] = {}
    share(features, "pay:x", ["m1", "m2"], 1_000, config)
    share(features, "pay:y", ["m2", "m3"], 1_500, config)
    share(features, "ip24:1.2.3", ["m1", "m2"], 2_000, config)
    share(features, "asn:64500", ["m1", "m3"], 500, config)  # evidence of a pair that is not linked: not listed
    accounts = {m: {"calls": 100, "max": 50.0, "ts": 3_000} for m in ("m1", "m2", "m3")}
    cluster = _describe(config, features, {"m1", "m2", "m3"}, accounts)
    assert cluster.members == ("m1", "m2", "m3") and cluster.cluster_id == cluster_id(["m1"])
    assert cluster.shared_features == ("pay:x", "pay:y", "ip24:1.2.3")  # strongest kind first
    assert cluster.first_seen_ts == 1_000 and cluster.updated_ts == 3_000
    assert cluster.score.members["member_mean_score"] == 50.0
    assert cluster.score.factors["link_strength"] == pytest.approx(25 * (1.45 / 2 + 0.5) / 2, abs=0.01)


def test_tracker_writes_changes_retires_merged_ids_and_alerts_once(config: LinkingConfig, tmp_path: Path) -> None:
    alerted: dict[str, int] = {}
    clock = iter(range(1, 100))
    rules = rules_doc()
    rules["rules"][1]["for"] = "0m"  # fire at the qualifying time (here: the cluster's updated_ts)
    accounts = {m: {"calls": 5000, "max": 60.0, "ts": 9_000} for m in ("b", "c", "d", "a")}
    tracker = ClusterTracker(config, alerted, clock_us=lambda: next(clock),
                             alerting=AlertSetup(load_rules(write_yaml(tmp_path / "rules.yaml", rules))),
                             accounts=accounts)
    features: dict[str, dict[str, object]] = {}
    share(features, "pay:x", ["b", "c", "d"], 1_000, config)

    def current(account: str) -> str | None:
        members = LinkState(features, config).components().get(account)
        return cluster_id(members) if members else None

    bcd = _describe(config, features, {"b", "c", "d"}, accounts)
    rows, alerts = tracker.emit([bcd], current, no_times)
    assert rows.cluster_id == [bcd.cluster_id] and rows.active == [1]
    assert sorted(alerts.account_id) == ["b", "c", "d"] and set(alerts.rule) == {RULE_CLUSTER}
    assert alerts.signals[0][:4] == ["size", "member_scores", "link_strength", "volume"]
    assert "pay:x" in alerts.signals[0]

    rows, alerts = tracker.emit([bcd], current, no_times)  # nothing changed: nothing written, nobody re-alerted
    assert len(rows) == 0 and len(alerts) == 0

    share(features, "pay:y", ["a", "b"], 9_500, config)  # "a" is smaller: the cluster's id changes
    abcd = _describe(config, features, {"a", "b", "c", "d"}, accounts)
    rows, alerts = tracker.emit([abcd], current, no_times)
    assert dict(zip(rows.cluster_id, rows.active, strict=True)) == {abcd.cluster_id: 1, bcd.cluster_id: 0}
    assert dict(zip(rows.cluster_id, rows.merged_into, strict=True)) == {abcd.cluster_id: "",
                                                                          bcd.cluster_id: abcd.cluster_id}
    # b, c, d's alerts under the retired id resolved (transitions) and fired again under the new id.
    assert alerts.account_id == ["a", "b", "c", "d"] and set(alerts.cluster_id) == {abcd.cluster_id}


def test_quiet_members_page_only_when_the_members_on_the_whole_extract(config: LinkingConfig,
                                                                      tmp_path: Path) -> None:
    # A reseller's card links three extractors and twelve quiet customers: the extractors page, the
    # customers do not (member mean (3 * 80 + 12 * 2) / 15 = 17.6 < 20) ...
    customers = [f"q{i:02d}" for i in range(12)]
    accounts = {**{m: {"calls": 5000, "max": 80.0, "ts": 9_000} for m in "abc"},
                **{m: {"calls": 5000, "max": 2.0, "ts": 9_000} for m in customers}}
    features: dict[str, dict[str, object]] = {}
    share(features, "pay:reseller", ["a", "b", "c", *customers], 1_000, config)
    cluster = _describe(config, features, {"a", "b", "c", *customers}, accounts)
    rules = rules_doc()
    rules["rules"][1]["for"] = "0m"
    tracker = ClusterTracker(config, {}, alerting=AlertSetup(load_rules(write_yaml(tmp_path / "r.yaml", rules))),
                             accounts=accounts)
    _, alerts = tracker.emit([cluster], lambda a: cluster.cluster_id, no_times)
    assert cluster.score.score >= 60 and sorted(alerts.account_id) == ["a", "b", "c"]
    # ... but a fleet whose members mostly extract pages its quiet members with it.
    fleet = {**accounts, **{m: {"calls": 5000, "max": 5.0, "ts": 9_000} for m in customers[:2]}}
    small = _describe(config, features, {"a", "b", "c", *customers[:2]}, fleet)
    _, alerts = tracker.emit([small], lambda a: small.cluster_id, no_times)
    assert sorted(alerts.account_id) == ["q00", "q01"]  # a, b, c already firing


def test_quiet_members_or_a_pair_do_not_alert(config: LinkingConfig) -> None:
    tracker = ClusterTracker(config, {})
    benign = {f"org-{i}": {"calls": 10**6, "max": 5.0, "ts": 1} for i in range(12)}
    big_company: dict[str, dict[str, object]] = {}
    share(big_company, "pay:x", list(benign), 1_000, config)
    cluster = _describe(config, big_company, set(benign), benign)
    _, alerts = tracker.emit([cluster], lambda a: cluster.cluster_id, no_times)
    assert len(alerts) == 0  # twelve orgs on one card: a company, not extraction

    pair: dict[str, dict[str, object]] = {}
    share(pair, "pay:x", ["p1", "p2"], 1_000, config)
    hot = {"p1": {"calls": 10**6, "max": 100.0, "ts": 1}, "p2": {"calls": 10**6, "max": 100.0, "ts": 1}}
    _, alerts = tracker.emit([_describe(config, pair, {"p1", "p2"}, hot)], lambda a: None, no_times)
    assert len(alerts) == 0  # below min_alert_size
