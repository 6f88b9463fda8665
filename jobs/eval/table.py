"""The human-readable summary of eval.json: per-archetype tables, misses, targets, timings."""

from __future__ import annotations

from typing import Any


def duration(seconds: float | None) -> str:
    """``45s``, ``3m07s``, ``2h05m``; ``-`` when there is nothing to show."""
    if seconds is None:
        return "-"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def _target_value(name: str, value: float | None) -> str:
    if name.endswith("_s"):
        return duration(value)
    if name == "false_positive_rate":
        return _pct(value)
    return _num(value)


def render(result: dict[str, Any]) -> str:
    cfg, inp, rep, summary = result["config"], result["input"], result["report"], result["summary"]
    scenario = cfg["scenario"]
    lines = [
        f"distillwatch eval: seed {scenario['seed']}, {duration(scenario['duration_s'])} of event time from "
        f"{cfg['start']} at {scenario['rate_eps']:g} events/s, {result['population']['labelled']} accounts "
        f"(mix x{cfg['mix_scale']:g})",
        f"input : {inp['events']:,} events from {inp['accounts_with_events']} accounts; "
        f"{inp['out_of_order']:,} out of order, {inp['beyond_allowed_lateness']:,} later than the allowed "
        f"{cfg['allowed_lateness_s']}s (max lag {inp['max_lag_s']:.0f}s)",
        f"report: events_in {rep['events_in']:,}, events_rejected {rep['events_rejected']:,}, "
        f"{rep['accounts']} accounts, {rep['flagged']} flagged, {rep['alerts']:,} alerts, {rep['clusters']} clusters",
    ]
    lines += _warnings(result)
    lines.append("")
    header = (f"{'attack archetype':<24}{'accounts':>9}{'flagged':>9}{'recall':>8}{'median TTD':>12}"
              f"{'p90 TTD':>10}{'no events':>11}{'harvested':>11}")
    lines += [header, "-" * len(header)]
    for name, m in result["per_attack_archetype"].items():
        lines.append(f"{name:<24}{m['accounts']:>9}{m['flagged']:>9}{_num(m['recall']):>8}"
                     f"{duration(m['median_ttd_s']):>12}{duration(m['p90_ttd_s']):>10}{m['silent']:>11}"
                     f"{_pct(m.get('harvested_share')):>11}")
    lines.append(f"{'all attackers':<24}{summary['attackers']:>9}{summary['true_positives']:>9}"
                 f"{_num(summary['recall']):>8}{duration(summary['median_ttd_s']):>12}"
                 f"{duration(summary['p90_ttd_s']):>10}{'':>11}{_pct(summary.get('harvested_share')):>11}")
    harvest = result.get("harvest")  # absent when the run had no per-minute output counts
    if harvest is not None:
        lines.append(f"harvested before the first alert: {_pct(harvest['harvested_share'])} of "
                     f"{harvest['attacker_output_tokens']:,} attacker output tokens (goal <= {harvest['goal']:.0%})")
    lines.append("")
    header = f"{'benign archetype':<24}{'accounts':>9}{'flagged':>9}{'FP rate':>9}{'no events':>11}"
    lines += [header, "-" * len(header)]
    for name, m in result["per_benign_archetype"].items():
        lines.append(f"{name:<24}{m['accounts']:>9}{m['flagged']:>9}{_pct(m['false_positive_rate']):>9}"
                     f"{m['silent']:>11}")
    lines.append(f"{'all benign':<24}{summary['benign']:>9}{summary['false_positives']:>9}"
                 f"{_pct(summary['false_positive_rate']):>9}")
    lines.append("")
    lines.append(f"precision {_num(summary['precision'])}: {summary['true_positives']} of {summary['flagged']} "
                 f"flagged accounts are attackers")
    clusters = result["clusters"]
    lines.append(f"fleets: {clusters['fleets_linked']} of {clusters['fleets']} linked into one cluster, mean "
                 f"coverage {_num(clusters['mean_fleet_coverage'], 2)}, cluster purity "
                 f"{_num(clusters['cluster_purity'], 2)}, {clusters['clusters_reported']} clusters reported, "
                 f"{clusters['benign_accounts_in_clusters']} benign accounts in clusters")
    feedback = result.get("analyst_feedback")  # absent in eval.json files written before it existed
    if feedback is not None:
        lines.append(f"analyst feedback: {feedback['alerted_accounts_false_positive']} alerted accounts marked false "
                     f"positive, {feedback['alerted_accounts_confirmed']} confirmed attacks")
    lines += _accounts("undetected attackers", result["undetected_attackers"])
    lines += _accounts("false positives", result["false_positive_accounts"])
    lines += ["", "targets"]
    for t in result["targets"]:
        lines.append(f"  {t['name']:<28}{t['op']} {_target_value(t['name'], t['threshold']):<8}"
                     f"{_target_value(t['name'], t['value']):>9}   {'PASS' if t['passed'] else 'FAIL'}")
    lines += _generalisation(result)
    passed = sum(t["passed"] for t in result["targets"])
    timings = result["timings_s"]
    lines += [
        f"result: {'PASS' if result['passed'] else 'FAIL'} ({passed} of {len(result['targets'])} targets)",
        f"timings: generate {duration(timings['generate'])}, replay {duration(timings['replay'])}, "
        f"total {duration(timings['total'])}",
    ]
    return "\n".join(lines)


def _generalisation(result: dict[str, Any]) -> list[str]:
    """The default beside each varied run and the worst of them, per target metric and attack archetype."""
    gen = result.get("generalisation")
    if not gen:
        return []
    runs = gen["runs"]
    head = f"{'':<30}{'default':>9}" + "".join(f"{'seed ' + str(r['seed']):>10}" for r in runs) + f"{'worst':>9}"
    lines = ["", f"generalisation: {len(runs)} varied scenarios (jobs/loadgen/variation.py)", head]
    for t in gen["targets"]:
        name = t["name"]
        cells = [_target_value(name, r["summary"][name]) for r in runs]
        lines.append(f"  {name:<28}{_target_value(name, result['summary'].get(name)):>9}"
                     + "".join(f"{c:>10}" for c in cells)
                     + f"{_target_value(name, t['value']):>9}   {'PASS' if t['passed'] else 'FAIL'}")
    for name, worst in gen["worst_attack_recall"].items():
        default = result["per_attack_archetype"].get(name, {}).get("recall")
        cells = [_num(r["attack_recall"].get(name)) for r in runs]
        lines.append(f"  recall {name:<21}{_num(default):>9}" + "".join(f"{c:>10}" for c in cells)
                     + f"{_num(worst):>9}")
    lines.append(f"generalisation: {'PASS' if gen['passed'] else 'FAIL'} (every target on the worst of the runs)")
    return lines


def _accounts(title: str, accounts: list[dict[str, Any]]) -> list[str]:
    if not accounts:
        return [f"{title}: none"]
    lines = [f"{title} ({len(accounts)}):"]
    for a in accounts:
        where = "" if a["in_report"] else "  (not in the report)"
        fleet = f" {a['fleet_id']}" if a["fleet_id"] else ""
        lines.append(f"  {a['account_id']:<20} {a['archetype']}{fleet}  max score {_num(a['max_score'], 1)}{where}")
    return lines


def _warnings(result: dict[str, Any]) -> list[str]:
    """Signs that the replay did not see the input whole: the metrics would mislead."""
    rep, missing = result["report"], result["population"]["missing_from_report"]
    notes = []
    if rep["events_in"] != result["input"]["events"]:
        notes.append(f"warning: the replay read {rep['events_in']:,} events of the {result['input']['events']:,} "
                     f"written")
    if missing:
        notes.append(f"warning: {missing} of {result['population']['active']} accounts with events are missing "
                     f"from the report (counted as not flagged)")
    if rep["unlabelled_accounts"]:
        notes.append(f"warning: the report names {len(rep['unlabelled_accounts'])} accounts the generator never made")
    return notes
