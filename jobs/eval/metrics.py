"""Detection quality of one replay against the generator's ground truth (pure functions).

Inputs: the labels (account -> archetype, attack or not, fleet), REPORT.json as a dict
(../shared/REPLAY_REPORT.md) and each account's first event time in the input.
Output: plain JSON-ready dicts. What each figure means (population, flagged, recall,
precision, false-positive rate, time to detect, percentiles, clusters, harvested share):
docs/evaluation.md ("Definitions").
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from jobs.loadgen.population import Label
from pipeline.kernels.layout import FRAME_MS


@dataclass(frozen=True, slots=True)
class Target:
    name: str  # a key of the metrics' "summary"
    op: str  # ">=" or "<="
    threshold: float
    description: str

    def passes(self, value: float | None) -> bool:
        # An unmeasurable value (no attackers, none detected) never passes.
        if value is None:
            return False
        return value >= self.threshold if self.op == ">=" else value <= self.threshold


# The share of what attackers take before their first alert that the detection issue aims for.
HARVEST_GOAL: Final = 0.01

# The acceptance targets of the detection work (issue 17), on the default scenario and on
# every varied one (``eval --vary-seeds``).
TARGETS: Final = (
    Target("recall", ">=", 0.95, "share of attacking accounts flagged"),
    Target("min_attack_archetype_recall", ">=", 0.9, "recall of the weakest attack archetype"),
    Target("false_positive_rate", "<=", 0.003, "share of benign accounts flagged"),
    Target("median_ttd_s", "<=", 300.0, "median event-time seconds from an attacker's first event to its flag"),
    Target("harvested_share", "<=", HARVEST_GOAL, "share of attacker output tokens taken before the first alert"),
)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one account of the population."""

    account_id: str
    archetype: str
    is_attack: bool
    fleet_id: str | None
    first_event_ms: int
    in_report: bool
    flagged: bool
    first_flagged_ms: int | None
    max_score: float | None

    @property
    def ttd_s(self) -> float | None:
        if not self.flagged or self.first_flagged_ms is None:
            return None
        return max(0.0, (self.first_flagged_ms - self.first_event_ms) / 1000.0)


def parse_ts_ms(text: str) -> int:
    """Epoch milliseconds of an RFC 3339 time such as ``2026-02-12T09:41:00Z``."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return round(moment.timestamp() * 1000)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) by linear interpolation between closest ranks; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def outcomes(
    labels: Mapping[str, Label], report: Mapping[str, Any], first_event_ms: Mapping[str, int]
) -> list[Outcome]:
    """One outcome per labelled account that sent at least one event, sorted by account id."""
    reported = {a["account_id"]: a for a in report.get("accounts", [])}
    result = []
    for account_id in sorted(labels.keys() & first_event_ms.keys()):
        label = labels[account_id]
        entry = reported.get(account_id)
        flagged = bool(entry and entry.get("flagged"))
        flagged_ts = entry.get("first_flagged_ts") if entry else None
        result.append(Outcome(
            account_id=account_id,
            archetype=label.archetype,
            is_attack=label.is_attack,
            fleet_id=label.fleet_id,
            first_event_ms=first_event_ms[account_id],
            in_report=entry is not None,
            flagged=flagged,
            first_flagged_ms=parse_ts_ms(flagged_ts) if flagged and flagged_ts else None,
            max_score=float(entry["max_score"]) if entry and entry.get("max_score") is not None else None,
        ))
    return result


def harvested_tokens(o: Outcome, output_by_minute: Mapping[int, int]) -> tuple[int, int]:
    """(output tokens taken before the alert, all output tokens) of one attacker.

    An alert is stamped with the start of the minute frame that raised it and can only be
    raised once that frame is complete: every event of that minute counts as taken.
    """
    total = sum(output_by_minute.values())
    if not o.flagged or o.first_flagged_ms is None:
        return total, total
    last_minute = o.first_flagged_ms // FRAME_MS
    return sum(t for m, t in output_by_minute.items() if m <= last_minute), total


def harvest_metrics(population: Sequence[Outcome],
                    output_by_minute: Mapping[str, Mapping[int, int]]) -> dict[str, Any]:
    """Share of attackers' output tokens harvested before their first alert, overall and per archetype."""
    taken: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    per_attacker = {}
    for o in population:
        if not o.is_attack:
            continue
        before, total = harvested_tokens(o, output_by_minute.get(o.account_id, {}))
        taken[o.archetype][0] += before
        taken[o.archetype][1] += total
        per_attacker[o.account_id] = ratio(before, total)
    before_all = sum(b for b, _ in taken.values())
    total_all = sum(t for _, t in taken.values())
    return {
        "harvested_share": ratio(before_all, total_all),
        "harvested_tokens": before_all,
        "attacker_output_tokens": total_all,
        "goal": HARVEST_GOAL,
        "per_attack_archetype": {name: {"harvested_share": ratio(b, t), "harvested_tokens": b, "output_tokens": t}
                                 for name, (b, t) in sorted(taken.items())},
        "per_attacker": per_attacker,
    }


def _ttd_stats(ttds: Sequence[float]) -> dict[str, Any]:
    return {
        "median_ttd_s": percentile(ttds, 50),
        "p90_ttd_s": percentile(ttds, 90),
        "max_ttd_s": max(ttds) if ttds else None,
    }


def _group(items: Iterable[Outcome]) -> dict[str, list[Outcome]]:
    groups: dict[str, list[Outcome]] = defaultdict(list)
    for o in items:
        groups[o.archetype].append(o)
    return dict(sorted(groups.items()))


def detection_metrics(population: Sequence[Outcome], silent: Sequence[Label] = ()) -> dict[str, Any]:
    """Precision, recall, false-positive rates and time to detect, overall and per archetype.

    ``silent`` are the labelled accounts without events: not evaluated, but counted per
    archetype so that an archetype with no active account still shows up (with no rates).
    """
    attackers = [o for o in population if o.is_attack]
    benign = [o for o in population if not o.is_attack]
    caught = [o for o in attackers if o.flagged]
    false_pos = [o for o in benign if o.flagged]
    ttds = [t for o in caught if (t := o.ttd_s) is not None]
    silent_by = Counter(label.archetype for label in silent)
    attack_names = {o.archetype for o in attackers} | {lab.archetype for lab in silent if lab.is_attack}
    benign_names = {o.archetype for o in benign} | {lab.archetype for lab in silent if not lab.is_attack}
    attack_groups, benign_groups = _group(attackers), _group(benign)
    per_attack = {}
    for name in sorted(attack_names):
        group = attack_groups.get(name, [])
        hits = [o for o in group if o.flagged]
        group_ttds = [t for o in hits if (t := o.ttd_s) is not None]
        per_attack[name] = {"accounts": len(group), "silent": silent_by[name], "flagged": len(hits),
                            "recall": ratio(len(hits), len(group)), **_ttd_stats(group_ttds)}
    per_benign = {}
    for name in sorted(benign_names):
        group = benign_groups.get(name, [])
        hits = [o for o in group if o.flagged]
        per_benign[name] = {"accounts": len(group), "silent": silent_by[name], "flagged": len(hits),
                            "false_positive_rate": ratio(len(hits), len(group))}
    return {
        "summary": {
            "accounts": len(population),
            "attackers": len(attackers),
            "benign": len(benign),
            "flagged": len(caught) + len(false_pos),
            "true_positives": len(caught),
            "false_positives": len(false_pos),
            "false_negatives": len(attackers) - len(caught),
            "precision": ratio(len(caught), len(caught) + len(false_pos)),
            "recall": ratio(len(caught), len(attackers)),
            "false_positive_rate": ratio(len(false_pos), len(benign)),
            # Flagged attackers whose report entry has no first_flagged_ts (a contract breach).
            "flagged_without_ts": len(caught) - len(ttds),
            **_ttd_stats(ttds),
            **_weakest(per_attack),
        },
        "per_attack_archetype": per_attack,
        "per_benign_archetype": per_benign,
        "undetected_attackers": [_brief(o) for o in attackers if not o.flagged],
        "false_positive_accounts": [_brief(o) for o in false_pos],
        "attackers": [{**_brief(o), "flagged": o.flagged, "ttd_s": o.ttd_s} for o in attackers],
    }


def _weakest(per_attack: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The attack archetype with the lowest recall (archetypes without active accounts have none)."""
    measured = [(m["recall"], name) for name, m in per_attack.items() if m["recall"] is not None]
    recall, name = min(measured, default=(None, None))
    return {"min_attack_archetype_recall": recall, "weakest_attack_archetype": name}


def _brief(o: Outcome) -> dict[str, Any]:
    return {"account_id": o.account_id, "archetype": o.archetype, "fleet_id": o.fleet_id,
            "in_report": o.in_report, "max_score": o.max_score}


def cluster_metrics(population: Sequence[Outcome], clusters: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """How well the report's clusters link each fleet's accounts together (and only them).

    Per fleet: its best cluster is the one holding most of its accounts; coverage = fleet
    accounts in that cluster / fleet accounts, purity = fleet accounts in it / its size,
    linked = coverage is 1. Overall purity weighs every reported cluster by its size.
    """
    fleet_of = {o.account_id: o.fleet_id for o in population if o.fleet_id}
    benign_ids = {o.account_id for o in population if not o.is_attack}
    members = [(str(c.get("cluster_id")), set(c.get("account_ids", [])), float(c.get("score") or 0.0))
               for c in clusters]
    fleets: dict[str, set[str]] = defaultdict(set)
    for account_id, fleet_id in fleet_of.items():
        fleets[fleet_id].add(account_id)
    per_fleet: dict[str, dict[str, Any]] = {}
    for fleet_id, accounts in sorted(fleets.items()):
        best = max(members, key=lambda m: (len(m[1] & accounts), m[2], m[0]), default=None)
        shared = len(best[1] & accounts) if best else 0
        per_fleet[fleet_id] = {
            "accounts": len(accounts),
            "best_cluster": best[0] if best and shared else None,
            "coverage": shared / len(accounts),
            "purity": shared / len(best[1]) if best and shared else None,
            "linked": shared == len(accounts),
        }
    majority = 0
    for _, ids, _ in members:
        counts = Counter(fleet_of[a] for a in ids if a in fleet_of)
        majority += max(counts.values(), default=0)
    clustered = sum(len(ids) for _, ids, _ in members)
    coverages = [f["coverage"] for f in per_fleet.values()]
    return {
        "clusters_reported": len(members),
        "fleets": len(per_fleet),
        "fleets_linked": sum(f["linked"] for f in per_fleet.values()),
        "mean_fleet_coverage": sum(coverages) / len(coverages) if coverages else None,
        "cluster_purity": majority / clustered if clustered else None,
        "benign_accounts_in_clusters": len(benign_ids & set().union(*(ids for _, ids, _ in members))),
        "per_fleet": per_fleet,
    }


def check_targets(summary: Mapping[str, Any], targets: Sequence[Target] = TARGETS) -> list[dict[str, Any]]:
    return [
        {"name": t.name, "op": t.op, "threshold": t.threshold, "value": summary.get(t.name),
         "passed": t.passes(summary.get(t.name)), "description": t.description}
        for t in targets
    ]


def evaluate(
    labels: Mapping[str, Label], report: Mapping[str, Any], first_event_ms: Mapping[str, int],
    output_by_minute: Mapping[str, Mapping[int, int]] | None = None,
) -> dict[str, Any]:
    """Every metric of one run, the targets with pass/fail, and what the report said in totals.

    ``output_by_minute`` (account -> event-time minute -> output tokens) adds the harvested share.
    """
    population = outcomes(labels, report, first_event_ms)
    silent = [labels[a] for a in sorted(labels.keys() - first_event_ms.keys())]
    detection = detection_metrics(population, silent)
    if output_by_minute is not None:
        harvest = harvest_metrics(population, output_by_minute)
        detection["summary"]["harvested_share"] = harvest["harvested_share"]
        for name, m in detection["per_attack_archetype"].items():
            m["harvested_share"] = harvest["per_attack_archetype"].get(name, {}).get("harvested_share")
        for entry in detection["attackers"]:
            entry["harvested_share"] = harvest["per_attacker"].get(entry["account_id"])
        detection["harvest"] = {k: v for k, v in harvest.items() if k != "per_attacker"}
    targets = check_targets(detection["summary"])
    reported = {a["account_id"] for a in report.get("accounts", [])}
    alerts = report.get("alerts", [])
    return {
        "report": {
            "events_in": report.get("events_in"),
            "events_rejected": report.get("events_rejected"),
            "accounts": len(reported),
            "flagged": sum(bool(a.get("flagged")) for a in report.get("accounts", [])),
            "alerts": len(alerts),
            "alerts_by_rule": dict(sorted(Counter(a.get("rule") for a in alerts).items())),
            "clusters": len(report.get("clusters", [])),
            # Accounts the report names that the generator never made: should be none.
            "unlabelled_accounts": sorted(reported - labels.keys()),
        },
        "population": {
            "labelled": len(labels),
            "active": len(population),
            "silent": len(silent),  # no events in the input: not evaluated
            "missing_from_report": sum(not o.in_report for o in population),
        },
        **detection,
        "clusters": cluster_metrics(population, report.get("clusters", [])),
        "targets": targets,
        "passed": all(t["passed"] for t in targets),
    }
