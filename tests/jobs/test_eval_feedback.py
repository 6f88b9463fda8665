"""The evaluation's analyst-feedback counts: the newest verdict per alerted account, read by a child."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.eval.feedback import count_verdicts, feedback_counts
from jobs.eval.metrics import evaluate
from jobs.eval.run import read_labels
from jobs.eval.scenario import scaled_mix, write_scenario
from jobs.eval.table import render
from jobs.loadgen.scenario import ScenarioConfig

ROOT = Path(__file__).resolve().parents[2]


def group(account: str, verdict: str | None, at: str = "2026-02-12T10:00:00Z") -> dict[str, object]:
    return {"account_id": account, "feedback": None if verdict is None else {"verdict": verdict, "recorded_at": at}}


def test_count_verdicts_takes_each_accounts_newest_verdict() -> None:
    groups = [
        group("a", "false_positive"), group("a", "confirmed", "2026-02-12T11:00:00Z"),  # two rules: newest wins
        group("b", "false_positive"), group("c", "ack"), group("d", None), group("e", "confirmed"),
    ]
    assert count_verdicts(groups) == {"alerted_accounts_false_positive": 1, "alerted_accounts_confirmed": 2}
    assert count_verdicts([]) == {"alerted_accounts_false_positive": 0, "alerted_accounts_confirmed": 0}


def test_the_table_prints_the_counts(tmp_path: Path) -> None:
    config = ScenarioConfig(seed=5, duration_s=60, rate_eps=20, mix=scaled_mix(0.1))
    stats = write_scenario(config, tmp_path / "e.jsonl", tmp_path / "l.json", allowed_lateness_s=120)
    report = {"events_in": stats.events, "events_rejected": 0, "alerts": [], "clusters": [], "accounts": []}
    result = {"config": {"scenario": config.model_dump(), "start": "2026-02-12T00:00:00Z", "mix_scale": 0.1,
                         "allowed_lateness_s": 120},
              "input": stats.to_json(), "timings_s": {"generate": 1.0, "replay": 2.0, "total": 3.0},
              **evaluate(read_labels(tmp_path / "l.json"), report, stats.first_event_ms)}
    assert "analyst feedback" not in render(result)  # eval.json written before the counts existed
    result["analyst_feedback"] = {"alerted_accounts_false_positive": 2, "alerted_accounts_confirmed": 1}
    assert "analyst feedback: 2 alerted accounts marked false positive, 1 confirmed attacks" in render(result)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "USER": "tester"}
    return subprocess.run([sys.executable, "-m", "jobs.cli", *args], capture_output=True, text=True, timeout=300,
                          cwd=ROOT, env=env, check=False)


@pytest.mark.slow
@pytest.mark.clickhouse
def test_feedback_counts_reads_a_runs_clickhouse(tmp_path: Path) -> None:
    data_dir = tmp_path / "state"
    done = cli("migrate", "--data-dir", str(data_dir))  # a run's ClickHouse exists before feedback is read
    assert done.returncode == 0, done.stderr
    assert feedback_counts(data_dir) == {"alerted_accounts_false_positive": 0, "alerted_accounts_confirmed": 0}
    done = cli("sql", "INSERT INTO alerts (alert_id, fired_ts, account_id, rule, severity, score) VALUES "
                      "('a1', now64(3), 'org-1', 'extraction_score_high', 'warning', 80), "
                      "('a2', now64(3), 'org-2', 'extraction_score_high', 'warning', 90)",
               "--data-dir", str(data_dir))
    assert done.returncode == 0, done.stderr
    for account, command in (("org-1", "false-positive"), ("org-2", "confirm"), ("org-9", "false-positive")):
        done = cli("alerts", command, account, "--reason", "reviewed", "--data-dir", str(data_dir))
        assert done.returncode == 0, done.stderr
    # org-9 never alerted: not an alerted account.
    assert feedback_counts(data_dir) == {"alerted_accounts_false_positive": 1, "alerted_accounts_confirmed": 1}
