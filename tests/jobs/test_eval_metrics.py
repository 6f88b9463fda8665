"""Evaluation metrics on hand-built reports and labels: exact values and edge cases."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from jobs.eval.metrics import (
    TARGETS,
    Target,
    check_targets,
    cluster_metrics,
    evaluate,
    outcomes,
    parse_ts_ms,
    percentile,
)
from jobs.loadgen.population import Label
from jobs.replay_report import iso_utc

T0 = parse_ts_ms("2026-02-12T00:00:00Z")
MIN = 60_000


def ts(ms: int) -> str:
    """Epoch ms as the report writes times (the replay's own formatter)."""
    return iso_utc(datetime.fromtimestamp(ms / 1000, tz=UTC)) or ""


RH, LM, HY = "reasoning_harvester", "logprob_miner", "hydra_fleet"
LABELS = {
    "a1": Label(RH, True, None),
    "a2": Label(RH, True, None),
    "a3": Label(LM, True, None),
    "f1": Label(HY, True, "fleet-A"),
    "f2": Label(HY, True, "fleet-A"),
    "f3": Label(HY, True, "fleet-A"),
    "b1": Label("chat_app", False, None),
    "b2": Label("chat_app", False, None),
    "b3": Label("chat_app", False, None),
    "b4": Label("chat_app", False, None),
    "h1": Label("hobbyist", False, None),
    "h2": Label("hobbyist", False, None),
    "s1": Label("hobbyist", False, None),  # sends nothing in the window
}
FIRST = {
    "a1": T0 + 30_000, "a2": T0, "a3": T0 + 5 * MIN, "f1": T0, "f2": T0 + MIN, "f3": T0 + 2 * MIN,
    "b1": T0, "b2": T0, "b3": T0, "b4": T0, "h1": T0 + 7 * MIN, "h2": T0,
}


def account(account_id: str, flagged_at: int | None = None, score: float = 10.0) -> dict[str, Any]:
    return {"account_id": account_id, "max_score": score, "flagged": flagged_at is not None,
            "first_flagged_ts": ts(flagged_at) if flagged_at is not None else None, "top_signals": []}


def report(accounts: list[dict[str, Any]], clusters: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"events_in": 1000, "events_rejected": 3, "accounts": accounts,
            "alerts": [{"account_id": a["account_id"], "rule": "extraction_score_high", "severity": "critical",
                        "fired_ts": a["first_flagged_ts"], "score": a["max_score"]}
                       for a in accounts if a["flagged"]],
            "clusters": clusters or []}


# a1: 90 s to detect; a2: 600 s; a3: alert stamped on a minute frame before its first event -> 0 s;
# f1: 1200 s; f2 in the report, not flagged; f3 and h1 missing from the report; b1 a false positive.
MIXED = report([
    account("a1", T0 + 2 * MIN, 90), account("a2", T0 + 10 * MIN, 80), account("a3", T0 + 4 * MIN, 75),
    account("f1", T0 + 20 * MIN, 71), account("f2", score=40), account("b1", T0 + 3 * MIN, 72),
    account("b2"), account("b3"), account("b4"), account("h2"),
])


def test_percentile_interpolates_between_closest_ranks() -> None:
    assert percentile([], 50) is None
    assert percentile([7.0], 90) == 7.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 90) == pytest.approx(3.7)
    assert percentile([1.0, 2.0, 3.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0], 100) == 3.0


def test_parse_ts_ms_reads_report_times() -> None:
    assert parse_ts_ms("2026-02-12T00:01:00Z") == T0 + MIN
    assert parse_ts_ms("2026-02-12T00:01:00.250Z") == T0 + MIN + 250
    assert parse_ts_ms("2026-02-12T00:01:00") == T0 + MIN  # no zone: UTC, as the report writes it


def test_exact_precision_recall_fpr_and_time_to_detect() -> None:
    result = evaluate(LABELS, MIXED, FIRST)
    s = result["summary"]
    assert (s["accounts"], s["attackers"], s["benign"]) == (12, 6, 6)
    assert (s["true_positives"], s["false_positives"], s["false_negatives"], s["flagged"]) == (4, 1, 2, 5)
    assert s["recall"] == pytest.approx(4 / 6)
    assert s["precision"] == pytest.approx(4 / 5)
    assert s["false_positive_rate"] == pytest.approx(1 / 6)
    # TTDs of the caught attackers: 0, 90, 600, 1200 seconds.
    assert s["median_ttd_s"] == pytest.approx(345.0)
    assert s["p90_ttd_s"] == pytest.approx(1020.0)
    assert s["max_ttd_s"] == pytest.approx(1200.0)

    per_attack = result["per_attack_archetype"]
    assert list(per_attack) == [HY, LM, RH]
    assert per_attack[RH] == {"accounts": 2, "silent": 0, "flagged": 2, "recall": 1.0,
                              "median_ttd_s": 345.0, "p90_ttd_s": pytest.approx(549.0), "max_ttd_s": 600.0}
    assert per_attack[LM]["median_ttd_s"] == 0.0
    assert per_attack[HY]["recall"] == pytest.approx(1 / 3)
    assert per_attack[HY]["median_ttd_s"] == per_attack[HY]["p90_ttd_s"] == 1200.0
    assert (s["min_attack_archetype_recall"], s["weakest_attack_archetype"]) == (pytest.approx(1 / 3), HY)

    per_benign = result["per_benign_archetype"]
    assert per_benign["chat_app"] == {"accounts": 4, "silent": 0, "flagged": 1, "false_positive_rate": 0.25}
    assert per_benign["hobbyist"] == {"accounts": 2, "silent": 1, "flagged": 0, "false_positive_rate": 0.0}

    assert [a["account_id"] for a in result["undetected_attackers"]] == ["f2", "f3"]
    assert [a["in_report"] for a in result["undetected_attackers"]] == [True, False]
    assert [a["account_id"] for a in result["false_positive_accounts"]] == ["b1"]
    assert {a["account_id"]: a["ttd_s"] for a in result["attackers"]} == {
        "a1": 90.0, "a2": 600.0, "a3": 0.0, "f1": 1200.0, "f2": None, "f3": None}


def test_population_and_report_totals() -> None:
    result = evaluate(LABELS, MIXED, FIRST)
    assert result["population"] == {"labelled": 13, "active": 12, "silent": 1, "missing_from_report": 2}
    rep = result["report"]
    assert (rep["events_in"], rep["events_rejected"], rep["accounts"], rep["flagged"], rep["alerts"]) == \
        (1000, 3, 10, 5, 5)
    assert rep["alerts_by_rule"] == {"extraction_score_high": 5}
    assert rep["unlabelled_accounts"] == []


def test_targets_pass_and_fail_on_the_boundaries() -> None:
    result = evaluate(LABELS, MIXED, FIRST)
    verdict = {t["name"]: t["passed"] for t in result["targets"]}
    # No per-minute output counts: the harvested share is unmeasured and fails.
    assert verdict == {"recall": False, "min_attack_archetype_recall": False, "false_positive_rate": False,
                       "median_ttd_s": False, "harvested_share": False}
    assert result["passed"] is False

    exact = {"recall": 0.95, "min_attack_archetype_recall": 0.9, "false_positive_rate": 0.003,
             "median_ttd_s": 300.0, "harvested_share": 0.01}
    assert all(t["passed"] for t in check_targets(exact))
    just_out = {"recall": 0.9499, "min_attack_archetype_recall": 0.8999, "false_positive_rate": 0.0031,
                "median_ttd_s": 300.5, "harvested_share": 0.0101}
    assert not any(t["passed"] for t in check_targets(just_out))
    assert [t.name for t in TARGETS] == ["recall", "min_attack_archetype_recall", "false_positive_rate",
                                         "median_ttd_s", "harvested_share"]
    assert Target("x", ">=", 0.5, "").passes(None) is False


def test_no_attacker_flagged() -> None:
    quiet = report([account(a) for a in FIRST])
    result = evaluate(LABELS, quiet, FIRST)
    s = result["summary"]
    assert s["recall"] == 0.0
    assert s["precision"] is None  # nothing flagged: undefined, not zero
    assert s["false_positive_rate"] == 0.0
    assert s["median_ttd_s"] is None and s["p90_ttd_s"] is None
    assert len(result["undetected_attackers"]) == 6
    assert {t["name"]: t["passed"] for t in result["targets"]} == {
        "recall": False, "min_attack_archetype_recall": False, "false_positive_rate": True,
        "median_ttd_s": False, "harvested_share": False}


def test_everyone_flagged() -> None:
    loud = report([account(a, FIRST[a] + MIN) for a in FIRST])
    s = evaluate(LABELS, loud, FIRST)["summary"]
    assert (s["recall"], s["false_positive_rate"], s["precision"]) == (1.0, 1.0, 0.5)
    assert s["median_ttd_s"] == s["p90_ttd_s"] == 60.0


def test_accounts_missing_from_the_report_count_as_not_flagged() -> None:
    result = evaluate(LABELS, report([]), FIRST)
    assert result["summary"]["recall"] == 0.0 and result["summary"]["false_positive_rate"] == 0.0
    assert result["population"]["missing_from_report"] == 12
    assert all(not a["in_report"] for a in result["undetected_attackers"])
    # A report with no lists at all is read the same way.
    assert evaluate(LABELS, {"events_in": 0, "events_rejected": 0}, FIRST)["summary"]["recall"] == 0.0


def test_flagged_without_a_time_counts_for_recall_but_not_for_ttd() -> None:
    broken = report([{**account("a1", T0 + MIN), "first_flagged_ts": None}])
    s = evaluate(LABELS, broken, FIRST)["summary"]
    assert s["true_positives"] == 1 and s["flagged_without_ts"] == 1 and s["median_ttd_s"] is None


def test_unlabelled_report_accounts_are_listed_not_scored() -> None:
    extra = report([account("a1", T0 + MIN), account("zz", T0)])
    result = evaluate(LABELS, extra, FIRST)
    assert result["report"]["unlabelled_accounts"] == ["zz"]
    assert result["summary"]["false_positives"] == 0 and result["summary"]["flagged"] == 1


def test_archetypes_without_active_accounts_still_appear() -> None:
    labels = {**LABELS, "p1": Label("proxy_router", True, None)}
    result = evaluate(labels, MIXED, FIRST)
    assert result["per_attack_archetype"]["proxy_router"] == {
        "accounts": 0, "silent": 1, "flagged": 0, "recall": None,
        "median_ttd_s": None, "p90_ttd_s": None, "max_ttd_s": None}
    assert result["summary"]["attackers"] == 6  # silent accounts are not evaluated


FLEETS = {
    **LABELS,
    "g1": Label(HY, True, "fleet-B"),
    "g2": Label(HY, True, "fleet-B"),
}
FLEET_FIRST = {**FIRST, "g1": T0, "g2": T0}


def test_cluster_coverage_and_purity() -> None:
    clusters = [
        {"cluster_id": "c-1", "account_ids": ["f1", "f2", "b1", "b2"], "score": 80.0},
        {"cluster_id": "c-2", "account_ids": ["f3"], "score": 60.0},
        {"cluster_id": "c-3", "account_ids": ["g1", "g2"], "score": 90.0},
    ]
    population = outcomes(FLEETS, report([]), FLEET_FIRST)
    m = cluster_metrics(population, clusters)
    assert m["per_fleet"]["fleet-A"] == {"accounts": 3, "best_cluster": "c-1", "coverage": pytest.approx(2 / 3),
                                         "purity": 0.5, "linked": False}
    assert m["per_fleet"]["fleet-B"] == {"accounts": 2, "best_cluster": "c-3", "coverage": 1.0, "purity": 1.0,
                                         "linked": True}
    assert (m["clusters_reported"], m["fleets"], m["fleets_linked"]) == (3, 2, 1)
    assert m["mean_fleet_coverage"] == pytest.approx((2 / 3 + 1) / 2)
    assert m["cluster_purity"] == pytest.approx(5 / 7)  # majorities 2 + 1 + 2 of 7 clustered accounts
    assert m["benign_accounts_in_clusters"] == 2


def test_cluster_ties_go_to_the_higher_score() -> None:
    clusters = [
        {"cluster_id": "low", "account_ids": ["f1", "f2"], "score": 50.0},
        {"cluster_id": "high", "account_ids": ["f2", "f3"], "score": 70.0},
    ]
    m = cluster_metrics(outcomes(LABELS, report([]), FIRST), clusters)
    assert m["per_fleet"]["fleet-A"]["best_cluster"] == "high"


def test_no_clusters_means_zero_coverage_not_a_crash() -> None:
    result = evaluate(FLEETS, MIXED, FLEET_FIRST)
    m = result["clusters"]
    assert (m["clusters_reported"], m["fleets"], m["fleets_linked"]) == (0, 2, 0)
    assert m["mean_fleet_coverage"] == 0.0 and m["cluster_purity"] is None
    assert m["per_fleet"]["fleet-A"] == {"accounts": 3, "best_cluster": None, "coverage": 0.0, "purity": None,
                                         "linked": False}
    # Clusters that hold no fleet account leave coverage at zero too.
    other = cluster_metrics(outcomes(FLEETS, MIXED, FLEET_FIRST),
                            [{"cluster_id": "c-9", "account_ids": ["b1", "b2"], "score": 10.0}])
    assert other["mean_fleet_coverage"] == 0.0 and other["cluster_purity"] == 0.0
    assert other["benign_accounts_in_clusters"] == 2


def test_harvested_share_counts_output_up_to_the_end_of_the_firing_frame() -> None:
    m0 = T0 // MIN
    output = {
        "a1": {m0: 100, m0 + 2: 50, m0 + 3: 850},  # flagged at minute 2: its tokens count as taken
        "a2": {m0: 10, m0 + 20: 990},  # flagged at minute 10
        "a3": {m0 + 5: 500},  # flagged on a frame before its first event: nothing taken
        "f1": {m0 + 20: 100},  # flagged at minute 20
        "f2": {m0 + 1: 300},  # never flagged: everything taken
        "f3": {m0 + 2: 200},  # missing from the report
        "b1": {m0: 999},  # benign: not counted
    }
    result = evaluate(LABELS, MIXED, FIRST, output)
    assert result["summary"]["harvested_share"] == pytest.approx(760 / 3100)
    per_attack = result["per_attack_archetype"]
    assert per_attack[RH]["harvested_share"] == pytest.approx(160 / 2000)
    assert per_attack[LM]["harvested_share"] == 0.0
    assert per_attack[HY]["harvested_share"] == 1.0
    assert result["harvest"]["harvested_tokens"] == 760 and result["harvest"]["attacker_output_tokens"] == 3100
    assert {a["account_id"]: a["harvested_share"] for a in result["attackers"]}["a1"] == pytest.approx(0.15)
    assert "harvested_share" not in evaluate(LABELS, MIXED, FIRST)["summary"]  # not measured without the counts
