"""The generalisation check and the target gate, as pure functions over metrics dicts."""

from __future__ import annotations

from typing import Any

from jobs.eval.generalise import HIGHER_IS_BETTER, failures, generalisation, run_digest
from jobs.eval.metrics import TARGETS, check_targets
from jobs.eval.table import _generalisation

GOOD = {"recall": 1.0, "min_attack_archetype_recall": 1.0, "precision": 1.0, "false_positive_rate": 0.0,
        "median_ttd_s": 60.0, "p90_ttd_s": 120.0, "harvested_share": 0.002}


def digest(seed: int, attack_recall: dict[str, float | None] | None = None, **summary: Any) -> dict[str, Any]:
    return {"seed": seed, "vary_seed": seed, "events": 1000, "accounts": 50, "summary": {**GOOD, **summary},
            "weakest_attack_archetype": None, "attack_recall": attack_recall or {"hydra_fleet": 1.0},
            "passed": all(t["passed"] for t in check_targets({**GOOD, **summary})), "eval": f"v{seed}/eval.json"}


def test_the_worst_is_taken_per_metric_in_its_own_direction() -> None:
    runs = [digest(8, recall=0.97, median_ttd_s=200.0, attack_recall={"hydra_fleet": 0.8, "logit_stealer": 1.0}),
            digest(9, false_positive_rate=0.002, harvested_share=0.008,
                   attack_recall={"hydra_fleet": 1.0, "logit_stealer": 0.5}),
            digest(10, median_ttd_s=90.0, min_attack_archetype_recall=0.95)]
    gen = generalisation(runs)
    assert gen["worst"] == {**GOOD, "recall": 0.97, "false_positive_rate": 0.002, "median_ttd_s": 200.0,
                            "harvested_share": 0.008, "min_attack_archetype_recall": 0.95}
    assert gen["worst_attack_recall"] == {"hydra_fleet": 0.8, "logit_stealer": 0.5}
    assert gen["passed"] is True and [t["name"] for t in gen["targets"]] == [t.name for t in TARGETS]
    assert set(HIGHER_IS_BETTER) >= {t.name for t in TARGETS}


def test_one_varied_run_missing_a_target_fails_the_check_and_is_named() -> None:
    runs = [digest(8), digest(9, false_positive_rate=0.004, median_ttd_s=301.0)]
    gen = generalisation(runs)
    assert gen["passed"] is False
    assert {t["name"] for t in gen["targets"] if not t["passed"]} == {"false_positive_rate", "median_ttd_s"}
    result = {"targets": check_targets(GOOD), "generalisation": gen}
    assert failures(result) == ["varied seed 9: false_positive_rate = 0.004 misses <= 0.003",
                                "varied seed 9: median_ttd_s = 301.0 misses <= 300.0"]


def test_an_unmeasured_metric_is_the_worst_and_no_runs_do_not_pass() -> None:
    gen = generalisation([digest(8), digest(9, harvested_share=None)])
    assert gen["worst"]["harvested_share"] is None and gen["passed"] is False
    assert generalisation([])["passed"] is False


def test_failures_on_the_default_alone() -> None:
    assert failures({"targets": check_targets(GOOD)}) == []
    missed = failures({"targets": check_targets({**GOOD, "min_attack_archetype_recall": 0.5})})
    assert missed == ["default scenario: min_attack_archetype_recall = 0.5 misses >= 0.9"]


def test_digest_and_table_of_a_run() -> None:
    result = {"config": {"scenario": {"seed": 8, "vary_seed": 8}}, "input": {"events": 1234},
              "population": {"active": 40}, "summary": {**GOOD, "weakest_attack_archetype": "hydra_fleet"},
              "per_attack_archetype": {"hydra_fleet": {"recall": 0.75}}, "passed": False,
              "files": {"eval": "x/eval.json"}}
    d = run_digest(result)
    assert (d["seed"], d["vary_seed"], d["events"], d["accounts"], d["attack_recall"]) == \
        (8, 8, 1234, 40, {"hydra_fleet": 0.75})
    assert d["summary"] == GOOD and d["weakest_attack_archetype"] == "hydra_fleet"
    lines = _generalisation({**result, "generalisation": generalisation([d])})
    text = "\n".join(lines)
    assert "seed 8" in text and "recall hydra_fleet" in text and "0.750" in text
    assert text.endswith("generalisation: PASS (every target on the worst of the runs)")
    assert _generalisation({"summary": GOOD}) == []
