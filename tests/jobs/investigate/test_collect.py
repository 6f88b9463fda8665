"""investigate() on a real demo run: what it reports agrees with the base tables."""

from __future__ import annotations

from datetime import UTC, timedelta

import pytest

from jobs.investigate.collect import InvestigateError, investigate
from jobs.investigate.result import Investigation
from pipeline.linking.config import load_linking_config
from tests.support.demo_data import DemoData

pytestmark = [pytest.mark.clickhouse, pytest.mark.slow]


def _one(demo_db: DemoData, sql: str, **params: object) -> tuple:
    return demo_db.client.query(sql.replace("$db", f"`{demo_db.database}`"), parameters=params).result_rows[0]


def test_attacking_account_shows_its_alert_minute_and_harvest_before_it(
        demo_db: DemoData, attacker: str, account_inv: Investigation) -> None:
    (page,) = account_inv.pages
    assert account_inv.target_kind == "account" and page.account_id == attacker
    first_fired, scored = _one(demo_db, "SELECT min(fired_ts), argMin(window_start, fired_ts) FROM $db.alerts "
                                        "WHERE account_id = {a:String}", a=attacker)
    first_fired = first_fired.replace(tzinfo=UTC)
    assert page.alerts and page.alerts[0].fired_ts == first_fired
    assert page.alerts[0].minute == scored.replace(tzinfo=UTC) < first_fired  # the scored minute, before it fired
    # The harvest, checked against every api_calls row of the account.
    total, before = _one(
        demo_db, "SELECT sum(completion_tokens + reasoning_tokens), "
                 "sumIf(completion_tokens + reasoning_tokens, ts < {t:DateTime64(3, 'UTC')}) "
                 "FROM $db.api_calls WHERE account_id = {a:String}",
        a=attacker, t=first_fired.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3])
    h = page.harvest
    assert h.first_alert == first_fired
    assert (h.total, h.before_alert) == (total, before)
    assert 0 < h.before_alert <= h.total
    assert account_inv.harvest == h


def test_account_page_sections_hold_the_accounts_activity(demo_db: DemoData, attacker: str,
                                                          account_inv: Investigation) -> None:
    (page,) = account_inv.pages
    calls, keys, first, last = _one(demo_db, "SELECT count(), groupUniqArray(api_key_id), min(ts), max(ts) "
                                             "FROM $db.api_calls WHERE account_id = {a:String}", a=attacker)
    assert page.calls == calls == sum(d.calls for d in page.days)
    assert (page.first_seen, page.last_seen) == (first.replace(tzinfo=UTC), last.replace(tzinfo=UTC))
    assert {e.value for e in page.entities if e.kind == "api_key"} == set(keys)
    assert {e.kind for e in page.entities} >= {"api_key", "ip_net", "network_type", "country", "user_agent"}
    assert all(e.first_seen <= e.last_seen for e in page.entities)
    assert max(s.max_score for s in page.scores) >= page.alerts[0].score - 1e-3
    assert abs(sum(m.share for m in page.models) - 1.0) < 1e-9
    assert page.feedback == []  # the table exists (migrated) and holds no verdict for the demo


def test_hydra_cluster_lists_its_members_links_and_shared_features(
        demo_db: DemoData, hydra_cluster: str, cluster_inv: Investigation) -> None:
    members, shared = _one(demo_db, "SELECT account_ids, shared_features FROM $db.clusters FINAL "
                                    "WHERE cluster_id = {c:String}", c=hydra_cluster)
    c = cluster_inv.cluster
    assert cluster_inv.target_kind == "cluster" and c is not None
    assert c.members == list(members) and [p.account_id for p in cluster_inv.pages] == list(members)
    assert all(demo_db.accounts[m]["archetype"] == "hydra_fleet" for m in members)
    assert c.shared_features == list(shared) and c.factors and c.history
    threshold = load_linking_config().link_threshold
    linked = [link for link in c.links if link.linked]
    assert linked and all(link.strength >= threshold for link in linked)
    # Every member is linked to another, and each card fingerprint the cluster lists backs some link.
    assert {m for link in linked for m in (link.a, link.b)} == set(members)
    link_features = {f.feature for link in c.links for f in link.features}
    assert {f for f in shared if f.startswith("pay:")} <= link_features
    # The campaign's harvest: all members, before the campaign's first alert.
    h = cluster_inv.harvest
    assert h.total == sum(p.harvest.total for p in cluster_inv.pages)
    assert h.first_alert == min(p.harvest.first_alert for p in cluster_inv.pages if p.harvest.first_alert)
    assert 0 < h.before_alert <= h.total


def test_shared_templates_name_other_accounts_within_the_linking_distance(cluster_inv: Investigation) -> None:
    max_bits = load_linking_config().template.max_hamming
    shared = [(p.account_id, s) for p in cluster_inv.pages for s in p.shared_templates]
    assert shared, "hydra members send near-duplicate prompts from shared templates"
    for account, s in shared:
        assert account not in s.other_accounts and 0 <= s.min_distance <= max_bits
        assert s.other_account_count >= len(s.other_accounts) > 0


def test_since_cuts_alerts_and_scores_exactly_and_hourly_rollups_at_the_hour(
        demo_db: DemoData, attacker: str, account_inv: Investigation) -> None:
    (page,) = account_inv.pages
    later = page.alerts[0].fired_ts
    (narrow,) = investigate(demo_db.client, demo_db.database, attacker, since=later).pages
    assert narrow.alerts and all(a.fired_ts >= later for a in narrow.alerts)
    assert narrow.scores and all(s.start >= later.replace(second=0, microsecond=0) for s in narrow.scores)
    # Traffic comes from hourly rollups: the period starts at the hour holding `since`.
    hour = later.replace(minute=0, second=0, microsecond=0)
    assert narrow.calls == sum(b.calls for b in page.hours if b.start >= hour) > 0
    assert narrow.harvest.before_alert == 0  # the first alert is at the period's start
    (after,) = investigate(demo_db.client, demo_db.database, attacker,
                           since=page.last_seen + timedelta(hours=1)).pages
    assert (after.calls, after.alerts, after.scores, after.harvest.total) == (0, [], [], 0)


def test_unknown_target_is_refused_by_name(demo_db: DemoData) -> None:
    with pytest.raises(InvestigateError, match="nobody-here"):
        investigate(demo_db.client, demo_db.database, "nobody-here")
    with pytest.raises(InvestigateError, match="c-00000000"):
        investigate(demo_db.client, demo_db.database, "c-00000000")


def test_campaign_values_are_totalled_over_every_member(demo_db: DemoData, cluster_inv: Investigation) -> None:
    """Each member page lists only its busiest values; a campaign's value carries every member's calls and span."""
    members = [p.account_id for p in cluster_inv.pages]
    rows = demo_db.client.query(
        "SELECT kind, value, sum(calls), min(first_seen), max(last_seen) "
        f"FROM `{demo_db.database}`.account_entities_1h "
        "WHERE account_id IN {members:Array(String)} GROUP BY kind, value",
        parameters={"members": members}).result_rows
    own = {(k, v): (int(c), f.replace(tzinfo=UTC), last.replace(tzinfo=UTC)) for k, v, c, f, last in rows}
    listed = {(e.kind, e.value) for p in cluster_inv.pages for e in p.entities}
    listed |= {("template", t.simhash) for p in cluster_inv.pages for t in p.shared_templates}
    got = {(e.kind, e.value): (e.calls, e.first_seen, e.last_seen) for e in cluster_inv.campaign_values}
    assert set(got) == listed
    assert got == {key: own[key] for key in listed}
    # Some value is busier over the campaign than on any one page: the totals add what the pages cut.
    page_calls = {(e.kind, e.value): e.calls for p in cluster_inv.pages for e in p.entities}
    assert any(got[key][0] > calls for key, calls in page_calls.items())
