"""The rules file: the packaged default, validation errors that name the field, the threshold override."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from pipeline.alerting.engine import AlertSetup
from pipeline.alerting.rules import (
    ACCOUNT_NAMES,
    CLUSTER,
    DEFAULT_RULES,
    SCORE_RULE,
    RulesError,
    duration_minutes,
    load_rules,
)
from pipeline.settings import load_settings
from schemas.tables import SIGNATURES_1M


def default_doc() -> dict[str, Any]:
    return yaml.safe_load(DEFAULT_RULES.read_text())


def write(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_packaged_rules_reproduce_the_former_policies() -> None:
    rules = load_rules()
    score = rules[SCORE_RULE]
    assert score.rule.params == {"threshold": 70} and score.rule.for_minutes == 0
    assert score.severities({"score": np.array([69.0, 70.0, 89.9, 90.0])}, np.arange(4)) == \
        ["warning", "warning", "warning", "critical"]
    cluster = rules["cluster_extraction"]
    assert cluster.rule.subject == CLUSTER and cluster.rule.action == "takedown"
    values = {"score": np.array([60.0, 59.9, 60.0, 60.0, 60.0, 60.0]), "size": np.array([3.0, 3, 2, 3, 3, 3]),
              "member_top_score": np.array([20.0, 50, 50, 19.9, 50, 50]),
              "member_score": np.array([20.0, 50, 50, 50, 19.9, 0]),
              "member_mean_score": np.array([0.0, 50, 50, 50, 19.9, 20]), "pooled_score": np.zeros(6)}
    assert cluster.condition(values).tolist() == [True, False, False, False, False, True]
    # What the members take together stands in for both the strongest members and a member's own evidence.
    quiet = {"score": np.array([60.0, 60, 59.9, 60]), "size": np.full(4, 12.0), "member_top_score": np.full(4, 12.0),
             "member_score": np.full(4, 5.0), "member_mean_score": np.full(4, 5.0),
             "pooled_score": np.array([50.0, 49.9, 80, 80])}
    assert cluster.condition(quiet).tolist() == [True, False, False, True]
    assert cluster.severities({"score": np.array([84.9, 85.0])}, np.arange(2)) == ["warning", "critical"]


def test_account_names_are_the_numeric_signature_columns() -> None:
    assert "calls_1h" in ACCOUNT_NAMES and "distinct_ips" in ACCOUNT_NAMES and "score" in ACCOUNT_NAMES
    assert "account_id" not in ACCOUNT_NAMES and "signal_points" not in ACCOUNT_NAMES
    assert set(ACCOUNT_NAMES) <= {name for name, _ in SIGNATURES_1M.columns}


def test_the_score_threshold_override_replaces_the_param() -> None:
    rules = load_rules(score_threshold=50)
    assert rules[SCORE_RULE].condition({"score": np.array([49.0, 50.0])}).tolist() == [False, True]


def test_the_override_needs_the_rule_it_tunes(tmp_path: Path) -> None:
    doc = default_doc()
    doc["rules"] = [r for r in doc["rules"] if r["name"] != SCORE_RULE]
    with pytest.raises(RulesError, match="DW_ALERT_SCORE_THRESHOLD needs a rule 'extraction_score_high'"):
        load_rules(write(tmp_path, doc), score_threshold=50)


@pytest.mark.parametrize("mutate, fragment", [
    (lambda d: d["rules"][0].update({"for": "5 minutes"}), r"rules\[0\]\.for: .*expected a duration"),
    (lambda d: d["rules"][0].update({"for": "90s"}), r"rules\[0\]\.for: .*whole number of minutes"),
    (lambda d: d["rules"][1].update({"subject": "org"}), r"rules\[1\]\.subject"),
    (lambda d: d["rules"][0].update({"mode": "loud"}), r"rules\[0\]\.mode"),
    (lambda d: d["rules"][0].update({"action": "ban"}), r"rules\[0\]\.action"),
    (lambda d: d["rules"][0].update({"action": "takedown"}), r"rules\[0\]: .*takedown is for cluster rules"),
    (lambda d: d["rules"][0].update({"severity": "urgent"}), r"rules\[0\]\.severity"),
    (lambda d: d["rules"][0].update({"labels": {"account_id": "x"}}), r"rules\[0\]\.labels: .*reserved"),
    (lambda d: d["rules"][0]["annotations"].update({"summary": "{acount_id}"}),
     r"rules\[0\]\.annotations\.summary: .*unknown placeholder \{acount_id\}"),
    (lambda d: d["rules"][0]["annotations"].update({"summary": "{account_id.__class__}"}),
     r"rules\[0\]\.annotations\.summary: .*unknown placeholder"),
    (lambda d: d["rules"][0]["annotations"].update({"summary": "{account_id:.1f}"}),
     r"rules\[0\]\.annotations\.summary: .*does not format"),
    (lambda d: d["rules"][0].pop("action"), r"rules\[0\]\.action: Field required"),
    (lambda d: d["rules"][0].update({"colour": "red"}), r"rules\[0\]\.colour: Extra inputs"),
    (lambda d: d["rules"].append(dict(d["rules"][0])), r"rules: .*unique; repeated: \['extraction_score_high'\]"),
    (lambda d: d.update(rules=[]), r"rules: .*at least 1"),
    (lambda d: d["rules"][0].update({"condition": "scor >= 70"}),
     r"rules\[0\]\.condition \(extraction_score_high\): unknown name 'scor'"),
    (lambda d: d["rules"][1].update({"condition": "signal.template_sweep > 1"}),
     r"rules\[1\]\.condition \(cluster_extraction\): signal.template_sweep: signals are not available"),
    (lambda d: d["rules"][1].update({"condition": "calls_1h > 1"}),
     r"rules\[1\]\.condition \(cluster_extraction\): unknown name 'calls_1h'"),
])
def test_a_bad_file_fails_naming_the_file_and_field(tmp_path: Path, mutate: Any, fragment: str) -> None:
    doc = default_doc()
    mutate(doc)
    path = write(tmp_path, doc)
    with pytest.raises(RulesError, match=fragment) as info:
        load_rules(path)
    assert str(path) in str(info.value)


def test_unreadable_yaml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("version: 1\nrules: [\n")
    with pytest.raises(RulesError, match=r"broken\.yaml"):
        load_rules(path)


def test_durations() -> None:
    assert [duration_minutes(d) for d in ("0m", "5m", "120s", "2h", "1d")] == [0, 5, 2, 120, 1440]


def test_settings_point_at_another_file(tmp_path: Path) -> None:
    doc = default_doc()
    doc["rules"][0]["mode"] = "monitor"
    settings = load_settings(alert_rules=write(tmp_path, doc))
    assert AlertSetup.from_settings(settings).rules[SCORE_RULE].rule.mode == "monitor"
