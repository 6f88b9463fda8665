from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline.alerting.engine import AlertSetup
from pipeline.alerting.rules import load_rules
from pipeline.linking.cluster_outputs import RULE_CLUSTER, ClusterTracker
from pipeline.linking.clusters import (
    LinkGraph,
    UnionFind,
    cluster_id,
    crossing_ts,
    describe_cluster,
    pair_key,
    pair_strength,
    score_cluster,
)
from pipeline.linking.config import LinkingConfig
from tests.pipeline.alerting.support import rules_doc, write_yaml


def test_union_find_merges_sets() -> None:
    sets = UnionFind()
    sets.union("a", "b")
    sets.union("c", "d")
    assert sets.members("a") == {"a", "b"} and sets.find("a") == sets.find("b") != sets.find("c")
    sets.union("b", "d")
    assert sets.members("c") == {"a", "b", "c", "d"}
    assert sets.members("z") == {"z"} and len(sets.roots()) == 1


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


def test_link_graph_links_splits_and_rebuilds(config: LinkingConfig) -> None:
    pairs: dict[str, dict[str, int]] = {}
    graph = LinkGraph(pairs, config)
    graph.add("a", "b", "pay:1", 10)
    graph.add("b", "c", "pay:2", 20)
    graph.add("c", "d", "asn:7", 30)  # evidence, not a link
    assert graph.component("a") == {"a", "b", "c"} and graph.component("d") == {"d"}
    assert not graph.add("a", "b", "pay:1", 50)  # known, later: nothing changes
    assert LinkGraph(dict(pairs), config).component("c") == {"a", "b", "c"}  # rebuilt from the mapping alone

    assert graph.retract("pay:2") == {"b", "c"}
    assert graph.component("a") == {"a", "b"} and graph.component("c") == {"c"}
    assert pair_key("b", "c") not in pairs  # no evidence left
    assert pairs[pair_key("c", "d")] == {"asn:7": 30}


def test_score_grows_with_size_member_scores_and_links(config: LinkingConfig) -> None:
    c = config.cluster
    small = score_cluster(2, [10, 10], [1.0], 100, c)
    assert 0 <= small.score < 40
    assert small.score == pytest.approx(sum(small.factors.values()), abs=0.01)
    assert score_cluster(8, [10] * 8, [1.0] * 7, 100, c).score > small.score
    assert score_cluster(2, [60, 60], [1.0], 100, c).score > small.score
    assert score_cluster(2, [10, 10], [2.0], 100, c).score > small.score
    full = score_cluster(50, [100] * 50, [5.0] * 60, 10**9, c)
    assert full.score == 100.0 and full.mean_member_score == 100.0


def no_times(cluster: object, rule: object) -> dict[str, int]:
    return {}  # qualifying times unknown: alerts fall back to the cluster's updated_ts


def _cluster_graph(config: LinkingConfig, members: list[str], feature: str = "pay:x") -> LinkGraph:
    graph = LinkGraph({}, config)
    for other in members[1:]:
        graph.add(members[0], other, feature, 1_000)
    return graph


def test_describe_cluster_explains_its_score(config: LinkingConfig) -> None:
    graph = _cluster_graph(config, ["m1", "m2", "m3"])
    graph.add("m1", "m2", "ip24:1.2.3", 2_000)
    graph.add("m2", "m3", "asn:64500", 500)  # evidence of a pair that is not linked: not listed
    accounts = {m: {"calls": 100, "max": 50.0, "ts": 3_000} for m in ("m1", "m2", "m3")}
    cluster = describe_cluster({"m1", "m2", "m3"}, graph, accounts)
    assert cluster.members == ("m1", "m2", "m3") and cluster.cluster_id == cluster_id(["m1"])
    assert cluster.shared_features == ("pay:x", "ip24:1.2.3")  # strongest kind first
    assert cluster.first_seen_ts == 1_000 and cluster.updated_ts == 3_000
    assert cluster.score.mean_member_score == 50.0


def test_tracker_writes_changes_retires_merged_ids_and_alerts_once(config: LinkingConfig, tmp_path: Path) -> None:
    alerted: dict[str, int] = {}
    clock = iter(range(1, 100))
    rules = rules_doc()
    rules["rules"][1]["for"] = "0m"  # fire at the qualifying time (here: the cluster's updated_ts)
    tracker = ClusterTracker(config, alerted, clock_us=lambda: next(clock),
                             alerting=AlertSetup(load_rules(write_yaml(tmp_path / "rules.yaml", rules))))
    accounts = {m: {"calls": 5000, "max": 60.0, "ts": 9_000} for m in ("b", "c", "d", "a")}
    graph = _cluster_graph(config, ["b", "c", "d"])

    def current(account: str) -> str | None:
        members = graph.component(account)
        return cluster_id(members) if len(members) > 1 else None

    bcd = describe_cluster({"b", "c", "d"}, graph, accounts)
    rows, alerts = tracker.emit([bcd], current, no_times)
    assert rows.cluster_id == [bcd.cluster_id] and rows.active == [1]
    assert sorted(alerts.account_id) == ["b", "c", "d"] and set(alerts.rule) == {RULE_CLUSTER}
    assert alerts.signals[0][:4] == ["size", "member_scores", "link_strength", "volume"]
    assert "pay:x" in alerts.signals[0]

    rows, alerts = tracker.emit([bcd], current, no_times)  # nothing changed: nothing written, nobody re-alerted
    assert len(rows) == 0 and len(alerts) == 0

    graph.add("a", "b", "pay:y", 9_500)  # "a" is smaller: the cluster's id changes
    abcd = describe_cluster({"a", "b", "c", "d"}, graph, accounts)
    rows, alerts = tracker.emit([abcd], current, no_times)
    assert dict(zip(rows.cluster_id, rows.active, strict=True)) == {abcd.cluster_id: 1, bcd.cluster_id: 0}
    assert dict(zip(rows.cluster_id, rows.merged_into, strict=True)) == {abcd.cluster_id: "",
                                                                          bcd.cluster_id: abcd.cluster_id}
    # b, c, d's alerts under the retired id resolved (transitions) and fired again under the new id.
    assert alerts.account_id == ["a", "b", "c", "d"] and set(alerts.cluster_id) == {abcd.cluster_id}


def test_quiet_members_or_a_pair_do_not_alert(config: LinkingConfig) -> None:
    tracker = ClusterTracker(config, {})
    big_company = _cluster_graph(config, [f"org-{i}" for i in range(12)])
    benign = {f"org-{i}": {"calls": 10**6, "max": 5.0, "ts": 1} for i in range(12)}
    cluster = describe_cluster(set(benign), big_company, benign)
    _, alerts = tracker.emit([cluster], lambda a: cluster.cluster_id, no_times)
    assert len(alerts) == 0  # twelve orgs on one card: a company, not extraction

    pair = _cluster_graph(config, ["p1", "p2"])
    hot = {"p1": {"calls": 10**6, "max": 100.0, "ts": 1}, "p2": {"calls": 10**6, "max": 100.0, "ts": 1}}
    _, alerts = tracker.emit([describe_cluster({"p1", "p2"}, pair, hot)], lambda a: None, no_times)
    assert len(alerts) == 0  # below min_alert_size
