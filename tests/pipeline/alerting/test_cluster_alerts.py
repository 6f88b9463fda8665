"""Cluster rules: one alert per member under the campaign's cluster_id, lifecycle, merges, suppression, monitor mode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pipeline.alerting.allowlist import load_allowlist
from pipeline.alerting.cluster_alerts import ClusterAlerting, ClusterFacts, default_setup
from pipeline.alerting.engine import AlertBatch, AlertSetup
from pipeline.alerting.lifecycle import MINUTE_MS
from pipeline.alerting.rules import CLUSTER, load_rules
from pipeline.alerting.transitions import FIRING, RESOLVED
from pipeline.linking.clusters import cluster_id
from pipeline.linking.config import load_linking_config
from pipeline.linking.messages import AccountUpdates, MemberChanges
from pipeline.linking.stages import ClusterStage
from tests.support.alerting import rules_doc, write_yaml
from tests.support.alertmanager import EXAMPLE_CONFIG
from tests.support.link_builders import share

MEMBERS = ("m1", "m2", "m3")


def immediate(tmp_path: Path, **setup: Any) -> AlertSetup:
    """The packaged rules with ``cluster_extraction`` firing at the qualifying time (``for: 0m``)."""
    doc = rules_doc()
    doc["rules"][1]["for"] = "0m"
    return AlertSetup(load_rules(write_yaml(tmp_path / "immediate.yaml", doc)), **setup)


def facts(score: float, at_min: int, members: tuple[str, ...] = MEMBERS, cid: str = "c-1") -> ClusterFacts:
    values = {"score": score, "size": len(members), "member_top_score": 60.0, "member_mean_score": 40.0,
              "member_max_score": 70.0, "calls": 9000.0, "pooled_score": 0.0}
    return ClusterFacts(cid, members, values, at_min * MINUTE_MS, ["size", "pay:x"], [12.0, 1.0],
                        dict.fromkeys(members, 40.0))


def run(alerting: ClusterAlerting, f: ClusterFacts, alerted: dict[str, Any], since: dict[str, int] | None = None
        ) -> AlertBatch:
    out = AlertBatch()
    alerting.evaluate(f, lambda rule: since or {}, alerted, out)
    return out


def test_members_fire_once_under_the_campaigns_id_and_resolve_after_the_quiet_period(tmp_path: Path) -> None:
    alerting = ClusterAlerting(immediate(tmp_path, grafana_url="http://g"))
    alerted: dict[str, Any] = {}
    out = run(alerting, facts(88, 10), alerted, since={"m1": 7 * MINUTE_MS})
    assert out.alerts.account_id == list(MEMBERS) and set(out.alerts.cluster_id) == {"c-1"}
    assert out.alerts.fired_ms == [7 * MINUTE_MS, 10 * MINUTE_MS, 10 * MINUTE_MS]  # qualifying time, else now
    assert set(out.alerts.severity) == {"critical"} and set(out.alerts.action) == {"takedown"}
    assert [(t.state, t.labels["cluster_id"], t.labels["account_id"]) for t in out.transitions] == \
        [(FIRING, "c-1", m) for m in MEMBERS]
    assert out.transitions[0].annotations["dashboard_url"] == "http://g/d/dw-campaigns/campaigns?var-cluster=c-1"
    assert "3 linked accounts" in out.transitions[0].annotations["summary"]
    out = run(alerting, facts(88, 20), alerted)  # still qualifying: nothing new
    assert len(out.alerts) == 0 and out.transitions == []
    out = run(alerting, facts(10, 20 + 1440), alerted)  # stopped qualifying, but not a day after the last time
    assert out.transitions == []
    out = run(alerting, facts(10, 21 + 1440), alerted)
    assert [(t.state, t.labels["cluster_id"], t.ends_at_ms) for t in out.transitions] == \
        [(RESOLVED, "c-1", (21 + 1440) * MINUTE_MS)] * 3
    assert all(alerted[m] == {} for m in MEMBERS)


def test_a_merge_resolves_the_retired_ids_alerts_and_fires_them_under_the_surviving_id(tmp_path: Path) -> None:
    alerting = ClusterAlerting(immediate(tmp_path))
    alerted: dict[str, Any] = {}
    run(alerting, facts(88, 10, ("m1", "m2", "m3"), cid="c-1"), alerted)
    run(alerting, facts(88, 11, ("m4", "m5", "m6"), cid="c-4"), alerted)
    merged = ("m1", "m2", "m3", "m4", "m5", "m6")
    out = run(alerting, facts(90, 15, merged, cid="c-1"), alerted, since=dict.fromkeys(merged, 10 * MINUTE_MS))
    # c-4 retired into c-1: its members' alerts resolve at the merge and fire again as part of c-1;
    # c-1's own members were already firing under the surviving id and page nothing new.
    assert [(t.state, t.labels["account_id"], t.labels["cluster_id"]) for t in out.transitions] == [
        x for m in ("m4", "m5", "m6") for x in ((RESOLVED, m, "c-4"), (FIRING, m, "c-1"))]
    assert {t.ends_at_ms for t in out.transitions if t.state == RESOLVED} == {15 * MINUTE_MS}
    assert out.alerts.account_id == ["m4", "m5", "m6"] and set(out.alerts.cluster_id) == {"c-1"}
    assert out.alerts.fired_ms == [15 * MINUTE_MS] * 3  # not before the alert it replaces ended
    firing = {m: alerted[m]["cluster_extraction"]["a"]["l"]["cluster_id"] for m in merged}
    assert firing == dict.fromkeys(merged, "c-1")


def test_a_merged_member_whose_new_cluster_does_not_qualify_only_resolves(tmp_path: Path) -> None:
    alerting = ClusterAlerting(immediate(tmp_path))
    alerted: dict[str, Any] = {}
    run(alerting, facts(88, 10, ("m4", "m5", "m6"), cid="c-4"), alerted)
    out = run(alerting, facts(40, 30, ("m0", "m4", "m5", "m6"), cid="c-0"), alerted)
    assert [(t.state, t.labels["cluster_id"], t.ends_at_ms) for t in out.transitions] == \
        [(RESOLVED, "c-4", 30 * MINUTE_MS)] * 3
    assert len(out.alerts) == 0 and all(alerted[m] == {} for m in ("m4", "m5", "m6"))
    out = run(alerting, facts(88, 31, ("m0", "m4", "m5", "m6"), cid="c-0"), alerted)  # qualifies later
    assert [(t.state, t.labels["cluster_id"]) for t in out.transitions] == [(FIRING, "c-0")] * 4


def test_an_older_releases_alerted_time_counts_as_firing(tmp_path: Path) -> None:
    alerting = ClusterAlerting(immediate(tmp_path))
    out = run(alerting, facts(88, 10), {"m1": 5 * MINUTE_MS, "m2": 6 * MINUTE_MS})
    assert out.alerts.account_id == ["m3"]


def test_monitor_mode_and_exempt_members_page_nobody(tmp_path: Path) -> None:
    doc = rules_doc()
    doc["rules"][1]["mode"] = "monitor"
    doc["rules"][1]["for"] = "0m"
    alerting = ClusterAlerting(AlertSetup(load_rules(write_yaml(tmp_path / "r.yaml", doc))))
    out = run(alerting, facts(88, 10), {})
    assert set(out.alerts.mode) == {"monitor"} and out.transitions == []

    allow = write_yaml(tmp_path / "a.yaml", {"version": 1, "entries": [
        {"id": "rt", "account_id": "m2", "reason": "red team", "owner": "sec", "expires": "2030-01-01",
         "effect": "exempt"},
        {"id": "hi", "account_id": "m3", "reason": "partner", "owner": "bd", "expires": "2030-01-01",
         "effect": {"raise_threshold": 60}}]})
    alerting = ClusterAlerting(immediate(tmp_path, allowlist=load_allowlist(allow)))
    out = run(alerting, facts(88, 10), {})
    assert out.alerts.suppressed_by == ["", "allowlist:rt", "allowlist:hi"]  # m3's max score 40 < 60
    assert [t.labels["account_id"] for t in out.transitions] == ["m1"]
    assert out.suppressed == {("cluster_extraction", "allowlist"): 2}


def test_for_waits_until_the_evidence_reaches_it(tmp_path: Path) -> None:
    doc = rules_doc()
    doc["rules"][1]["for"] = "30m"
    alerting = ClusterAlerting(AlertSetup(load_rules(write_yaml(tmp_path / "r.yaml", doc))))
    alerted: dict[str, Any] = {}
    since = dict.fromkeys(MEMBERS, 10 * MINUTE_MS)
    assert len(run(alerting, facts(88, 39), alerted, since).alerts) == 0
    out = run(alerting, facts(88, 40), alerted, since)
    assert out.alerts.fired_ms == [40 * MINUTE_MS] * 3


FLEET_A, FLEET_B = ["a1", "a2", "a3", "a4"], ["b1", "b2", "b3", "b4"]


def link(stage: ClusterStage, pairs: list[tuple[str, str]], feature: str, minute: int) -> MemberChanges:
    """The pairs' accounts seen with ``feature`` at ``minute`` (stage A's memberships, read by ``stage``)."""
    return share(stage.features, feature, sorted({x for pair in pairs for x in pair}), minute * MINUTE_MS)  # type: ignore[arg-type]


def busy(accounts: list[str], minute: int) -> AccountUpdates:
    """Account updates: each account's frame at ``minute`` scored 60, 2,000 calls."""
    n, ts = len(accounts), minute * MINUTE_MS
    return AccountUpdates("d", accounts, [2000] * n, [ts] * n, [60.0] * n, [60.0] * n, [60.0] * n, [ts] * n)


def test_stage_b_records_the_merge_and_moves_the_retired_ids_alerts_to_the_surviving_id(tmp_path: Path) -> None:
    stage = ClusterStage(load_linking_config(), {}, {}, {}, drain_sources=["d"], partitions=1,
                         alerting=immediate(tmp_path))
    fleet_a, fleet_b = FLEET_A, FLEET_B
    first = stage.handle([busy(fleet_a + fleet_b, 1), link(stage, [("a1", x) for x in fleet_a[1:]], "pay:A", 2),
                          link(stage, [("b1", x) for x in fleet_b[1:]], "pay:B", 3)])
    id_a, id_b = cluster_id(fleet_a), cluster_id(fleet_b)
    assert {(t.labels["account_id"], t.labels["cluster_id"]) for t in first.transitions} == \
        {*((m, id_a) for m in fleet_a), *((m, id_b) for m in fleet_b)}
    merged = stage.handle([link(stage, [("a4", "b1")], "pay:C", 9)])
    # The retired id's row names the surviving cluster; the surviving cluster's row names none.
    rows = dict(zip(merged.rows.cluster_id, zip(merged.rows.active, merged.rows.merged_into, strict=True),
                    strict=True))
    assert rows == {id_a: (1, ""), id_b: (0, id_a)}
    assert [(t.state, t.labels["account_id"], t.labels["cluster_id"]) for t in merged.transitions] == [
        x for m in fleet_b for x in ((RESOLVED, m, id_b), (FIRING, m, id_a))]
    assert {t.ends_at_ms for t in merged.transitions if t.state == RESOLVED} == {9 * MINUTE_MS}
    assert {stage.tracker.alerted[m]["cluster_extraction"]["a"]["l"]["cluster_id"]  # type: ignore[index]
            for m in fleet_a + fleet_b} == {id_a}


def test_the_packaged_for_fires_a_sub_cluster_a_minute_after_it_qualifies_and_moves_it_at_the_merge() -> None:
    """``cluster_extraction`` holds 1m; a sub-cluster that fired resolves at its merge and its members fire
    again under the surviving id (the page waits for Alertmanager's campaign route: test_alertmanager)."""
    stage = ClusterStage(load_linking_config(), {}, {}, {}, drain_sources=["d"], partitions=1)
    id_a, id_b = cluster_id(FLEET_A), cluster_id(FLEET_B)
    out = stage.handle([busy(FLEET_A + FLEET_B, 1), link(stage, [("a1", x) for x in FLEET_A[1:]], "pay:A", 2),
                        link(stage, [("b1", x) for x in FLEET_B[1:]], "pay:B", 3), busy(FLEET_A + FLEET_B, 5)])
    assert sorted((t.labels["cluster_id"], t.starts_at_ms // MINUTE_MS) for t in out.transitions) == sorted(
        [(id_a, 3)] * len(FLEET_A) + [(id_b, 4)] * len(FLEET_B))  # qualified at 2 and 3
    out = stage.handle([link(stage, [("a4", "b1")], "pay:C", 6), busy(FLEET_A + FLEET_B, 6)])  # merged at minute 6
    assert [(t.state, t.labels["account_id"], t.labels["cluster_id"], t.starts_at_ms // MINUTE_MS)
            for t in out.transitions if t.state == FIRING] == [(FIRING, m, id_a, 6) for m in FLEET_B]
    assert {(t.labels["account_id"], t.ends_at_ms) for t in out.transitions if t.state == RESOLVED} == \
        {(m, 6 * MINUTE_MS) for m in FLEET_B}


def test_the_packaged_for_and_the_example_campaign_wait_outlast_a_measured_fragment() -> None:
    """A fragment lived 2m48s from qualifying to its merge on a live demo (docs/alerting.md): the
    packaged ``for`` plus the example Alertmanager campaign route's ``group_wait`` cover it with a
    minute of margin, so it resolves before anyone is paged."""
    rule = next(cr.rule for cr in default_setup().rules.for_subject(CLUSTER) if cr.name == "cluster_extraction")
    routes = yaml.safe_load(EXAMPLE_CONFIG.read_text())["route"]["routes"]
    (campaigns,) = [r for r in routes if f'alertname="{rule.name}"' in r.get("matchers", [])]
    wait_s = {"s": 1, "m": 60}[campaigns["group_wait"][-1]] * int(campaigns["group_wait"][:-1])
    assert rule.for_minutes * 60 + wait_s >= (2 * 60 + 48) + 60


def test_a_fragment_seen_while_an_input_lags_is_not_paged_and_the_campaign_pages_once_read() -> None:
    """The fleet's halves were linked at minute 1 by an observation that waits in a lagging partition,
    while the account updates up to minute 9 are read (the watermark stays at 1:30). Without the
    watermark, each half fires under its own id a minute after qualifying; with it, nothing fires until
    that partition is read, and then the whole fleet fires once, under one id, at the same time."""
    stage = ClusterStage(load_linking_config(), {}, {}, {}, drain_sources=["d"], partitions=1)
    halves = [busy(FLEET_A + FLEET_B, 1), link(stage, [("a1", x) for x in FLEET_A[1:]], "pay:A", 1),
              link(stage, [("b1", x) for x in FLEET_B[1:]], "pay:B", 1)]
    ahead = [busy(FLEET_A + FLEET_B, minute) for minute in range(2, 10)]
    out = stage.handle([*halves, *ahead], watermark_ms=90_000)
    assert out.transitions == [] and stage.tracker.alerting.waiting == dict.fromkeys(FLEET_A + FLEET_B,
                                                                                  2 * MINUTE_MS)
    out = stage.handle([link(stage, [("a4", "b1")], "pay:C", 1)], watermark_ms=9 * MINUTE_MS)
    assert sorted((t.state, t.labels["account_id"], t.labels["cluster_id"], t.starts_at_ms) for t in out.transitions) \
        == [(FIRING, m, cluster_id(FLEET_A), 2 * MINUTE_MS) for m in sorted(FLEET_A + FLEET_B)]
    assert stage.tracker.alerting.waiting == {}

    unaligned = ClusterStage(load_linking_config(), {}, {}, {}, drain_sources=["d"], partitions=1)
    halves = [busy(FLEET_A + FLEET_B, 1), link(unaligned, [("a1", x) for x in FLEET_A[1:]], "pay:A", 1),
              link(unaligned, [("b1", x) for x in FLEET_B[1:]], "pay:B", 1)]
    out = unaligned.handle([*halves, *ahead])
    assert {t.labels["cluster_id"] for t in out.transitions} == {cluster_id(FLEET_A), cluster_id(FLEET_B)}


def test_a_member_held_for_the_watermark_fires_once_it_passes_without_new_evidence() -> None:
    stage = ClusterStage(load_linking_config(), {}, {}, {}, drain_sources=["d"], partitions=1)
    stage.handle([busy(FLEET_A, 1), link(stage, [("a1", x) for x in FLEET_A[1:]], "pay:A", 1), busy(FLEET_A, 4)],
                 watermark_ms=MINUTE_MS)
    assert stage.handle([], watermark_ms=90_000).transitions == []  # not yet at 2:00
    out = stage.handle([], watermark_ms=2 * MINUTE_MS)
    assert sorted((t.labels["account_id"], t.starts_at_ms) for t in out.transitions) == \
        [(m, 2 * MINUTE_MS) for m in FLEET_A]


def test_a_merged_member_held_for_the_watermark_fires_again_after_its_resolved_alert() -> None:
    """Alerts are keyed by (account, rule, time): a member moved by a merge fires under the surviving id
    later than the alert that resolved, even when the watermark holds it and it fires at a later evaluation
    (it used to fire then at its first qualifying time again: the resolved alert's key, one row lost)."""
    stage = ClusterStage(load_linking_config(), {}, {}, {}, drain_sources=["d"], partitions=1)
    out = stage.handle([busy(FLEET_A + FLEET_B, 1), link(stage, [("a1", x) for x in FLEET_A[1:]], "pay:A", 1),
                        link(stage, [("b1", x) for x in FLEET_B[1:]], "pay:B", 1), busy(FLEET_A + FLEET_B, 3)],
                       watermark_ms=3 * MINUTE_MS)
    first = {t.labels["account_id"]: t.starts_at_ms for t in out.transitions if t.labels["account_id"] in FLEET_B}
    assert set(first.values()) == {2 * MINUTE_MS}
    merged = [link(stage, [("a4", "b1")], "pay:C", 3), busy(FLEET_A + FLEET_B, 4)]
    out = stage.handle(merged, watermark_ms=3 * MINUTE_MS)  # held: due at the merge (4:00), read to 3:00
    assert {t.state for t in out.transitions} == {RESOLVED}
    out = stage.handle([busy(FLEET_A + FLEET_B, 5)], watermark_ms=5 * MINUTE_MS)
    again = {t.labels["account_id"]: t.starts_at_ms for t in out.transitions if t.state == FIRING}
    assert set(again) == set(FLEET_B) and all(again[m] > first[m] for m in FLEET_B)
