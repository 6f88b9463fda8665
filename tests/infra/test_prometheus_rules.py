"""infra/prometheus: the alerting rules pass `promtool check rules` and their unit tests
(`promtool test rules`), every rule is tested, labelled and documented, and reads metrics the
worker exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.metrics import documented_metrics

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "infra" / "prometheus"
RULES = PROM / "rules.yml"
RULE_TESTS = PROM / "rules.test.yml"
OPERATIONS = ROOT / "docs" / "operations.md"
SEVERITIES = {"warning", "critical"}
# Series a histogram or counter adds to its documented name.
SUFFIXES = ("_bucket", "_count", "_sum")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    if exe is None:
        pytest.fail("promtool not found: install Debian's prometheus package (`make test` does)")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=120, cwd=PROM, check=False)


def alerting_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_checks_the_rules() -> None:
    done = promtool("check", "rules", RULES.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alerting_rules())} rules found" in done.stdout


def test_promtool_unit_tests_pass() -> None:
    done = promtool("test", "rules", RULE_TESTS.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout and "FAILED" not in done.stdout


def test_every_rule_is_unit_tested_firing_and_silent() -> None:
    fired: set[str] = set()
    silent: set[str] = set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check["exp_alerts"] else silent).add(check["alertname"])
    names = {r["alert"] for r in alerting_rules()}
    assert fired == names
    assert silent == names


def test_every_rule_has_a_severity_annotations_and_a_runbook_section() -> None:
    operations = OPERATIONS.read_text()
    for rule in alerting_rules():
        name = rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, name
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], name
        assert annotations["runbook_url"] == f"docs/operations.md#{name.lower()}"
        assert re.search(rf"^#+ {name}$", operations, re.M), f"no runbook heading for {name} in {OPERATIONS}"


def test_rules_read_only_metrics_the_worker_exports() -> None:
    exported = set(documented_metrics())
    for rule in alerting_rules():
        for metric in set(re.findall(r"\bdistillwatch_\w+", rule["expr"])):
            base = metric.removesuffix(next((s for s in SUFFIXES if metric.endswith(s)), ""))
            assert base in exported, f"{rule['alert']} reads {metric}, which the worker does not export"


def test_the_example_scrape_config_loads_the_rules_and_passes_promtool() -> None:
    config = yaml.safe_load((PROM / "prometheus.yml").read_text())
    assert config["rule_files"] == ["rules.yml"]
    assert [job["job_name"] for job in config["scrape_configs"]] == ["distillwatch"]
    done = promtool("check", "config", "prometheus.yml")
    assert done.returncode == 0, done.stdout + done.stderr
