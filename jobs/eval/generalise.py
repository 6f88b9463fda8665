"""The generalisation check: the worst of several varied scenarios beside the default (pure functions).

Every target must hold on the default scenario and on each varied one; since a target is a
bound on one summary metric, that is the same as holding on the per-metric worst.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from jobs.eval.metrics import TARGETS, Target, check_targets

# Summary metrics compared across runs, and which direction is worse.
HIGHER_IS_BETTER: Final = {"recall": True, "min_attack_archetype_recall": True, "precision": True,
                           "false_positive_rate": False, "median_ttd_s": False, "p90_ttd_s": False,
                           "harvested_share": False}


def _worse(values: Sequence[float | None], higher_is_better: bool) -> float | None:
    """The worst value; an unmeasured one (None) is worst of all, as it fails every target."""
    if any(v is None for v in values) or not values:
        return None
    return min(values) if higher_is_better else max(values)  # type: ignore[type-var]


def run_digest(result: Mapping[str, Any]) -> dict[str, Any]:
    """What the comparison keeps of one run's eval.json."""
    scenario = result["config"]["scenario"]
    return {
        "seed": scenario["seed"],
        "vary_seed": scenario.get("vary_seed"),
        "events": result["input"]["events"],
        "accounts": result["population"]["active"],
        "summary": {name: result["summary"].get(name) for name in HIGHER_IS_BETTER},
        "weakest_attack_archetype": result["summary"].get("weakest_attack_archetype"),
        "attack_recall": {name: m["recall"] for name, m in result["per_attack_archetype"].items()},
        "passed": result["passed"],
        "eval": result["files"]["eval"],
    }


def generalisation(varied: Sequence[Mapping[str, Any]], targets: Sequence[Target] = TARGETS) -> dict[str, Any]:
    """Per-metric worst over the varied runs' digests, with the targets checked on it."""
    worst = {name: _worse([r["summary"][name] for r in varied], better) for name, better in HIGHER_IS_BETTER.items()}
    names = sorted({name for r in varied for name in r["attack_recall"]})
    # Per archetype, only the runs where it had active accounts (the gate is min_attack_archetype_recall).
    worst_recall = {name: min(v for r in varied if (v := r["attack_recall"].get(name)) is not None)
                    for name in names if any(r["attack_recall"].get(name) is not None for r in varied)}
    checked = check_targets(worst, targets)
    return {
        "runs": list(varied),
        "worst": worst,
        "worst_attack_recall": worst_recall,
        "targets": checked,
        "passed": bool(varied) and all(t["passed"] for t in checked),
    }


def failures(result: Mapping[str, Any]) -> list[str]:
    """One line per missed target: on the default scenario, then on each varied run that missed it."""
    lines = [f"default scenario: {_miss(t)}" for t in result["targets"] if not t["passed"]]
    for run in (result.get("generalisation") or {}).get("runs", []):
        for t in check_targets(run["summary"]):
            if not t["passed"]:
                lines.append(f"varied seed {run['seed']}: {_miss(t)}")
    return lines


def _miss(t: Mapping[str, Any]) -> str:
    return f"{t['name']} = {t['value']} misses {t['op']} {t['threshold']}"
