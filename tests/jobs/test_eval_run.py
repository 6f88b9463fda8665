"""``distillwatch eval``: scenario options, the written input, and one tiny run end to end.

Detection quality is not asserted here: that is what ``make eval`` measures.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from jobs.eval.metrics import TARGETS, evaluate
from jobs.eval.run import EvalOptions, _result, read_labels, scenario_config, varied_options
from jobs.eval.scenario import InputStats, OptionsError, resolve_size, scaled_mix, write_scenario
from jobs.eval.table import duration, render
from jobs.loadgen.archetypes import ATTACKS, BENIGN
from jobs.loadgen.scenario import DEFAULT_MIX, ScenarioConfig

ROOT = Path(__file__).resolve().parents[2]


def test_size_from_any_two_of_events_rate_and_duration() -> None:
    assert resolve_size(None, None, None) == (150.0, 21_600.0)
    assert resolve_size(None, 50.0, 120.0) == (50.0, 120.0)
    assert resolve_size(6000, 50.0, None) == (50.0, 120.0)
    assert resolve_size(6000, None, 60.0) == (100.0, 60.0)
    assert resolve_size(300_000, None, None) == (150.0, 2000.0)
    with pytest.raises(OptionsError, match="at most two"):
        resolve_size(6000, 50.0, 120.0)
    with pytest.raises(OptionsError):
        resolve_size(0, None, None)
    with pytest.raises(OptionsError):
        resolve_size(None, 0.0, None)


def test_mix_scale_keeps_every_archetype_and_real_fleets() -> None:
    assert scaled_mix(1.0) == dict(DEFAULT_MIX)
    assert scaled_mix(2.0) == {name: 2 * n for name, n in DEFAULT_MIX.items()}
    small = scaled_mix(0.05)
    assert set(small) == set(DEFAULT_MIX) and all(n >= 1 for n in small.values())
    assert small["hydra_fleet"] == 2 and small["hobbyist"] == 8
    with pytest.raises(OptionsError):
        scaled_mix(0)


def test_scenario_config_from_options() -> None:
    config = scenario_config(EvalOptions(events=6000, rate_eps=50.0, mix_scale=0.1, start="2026-03-01T12:00:00Z",
                                         jitter_fraction=0.05, jitter_max_s=30.0, seed=3))
    assert (config.rate_eps, config.duration_s, config.seed) == (50.0, 120.0, 3)
    assert config.start_ms == 1_772_366_400_000
    assert (config.jitter_fraction, config.jitter_max_s) == (0.05, 30.0)
    assert set(config.mix) == set(DEFAULT_MIX)
    with pytest.raises(OptionsError, match="--start"):
        scenario_config(EvalOptions(start="yesterday"))


def test_accounts_add_or_set_archetype_counts_and_are_recorded() -> None:
    base = scenario_config(EvalOptions(mix_scale=0.1))
    assert base.mix["low_and_slow_fleet"] == 10  # a tenth of the default mix's 100; --accounts sets it
    opts = EvalOptions(mix_scale=0.1, accounts=("low_and_slow_fleet=200", " hobbyist = 3"))
    config = scenario_config(opts)
    assert config.mix == {**base.mix, "low_and_slow_fleet": 200, "hobbyist": 3}
    # The varied runs carry it and vary it like any count.
    varied = [scenario_config(v).mix for v in varied_options(replace(opts, vary_seeds=3))]
    assert all(m["low_and_slow_fleet"] > 0 for m in varied) and len({m["low_and_slow_fleet"] for m in varied}) > 1
    # eval.json records the option: the run can be repeated from it.
    stats = InputStats(0, 0, {}, {}, 0, 0, 0.0, None, None)
    recorded = _result(opts, config, 120, None, stats, {})["config"]
    assert recorded["accounts"] == ["low_and_slow_fleet=200", " hobbyist = 3"]
    again = EvalOptions(mix_scale=recorded["mix_scale"], accounts=tuple(recorded["accounts"]))
    assert scenario_config(again).mix == recorded["scenario"]["mix"]
    for bad, message in ((("botnet=3",), "unknown archetypes"), (("hobbyist:3",), "NAME=COUNT"),
                         (("hobbyist=-1",), "NAME=COUNT"), (("hobbyist=",), "NAME=COUNT")):
        with pytest.raises(OptionsError, match=message):
            scenario_config(EvalOptions(accounts=bad))


def test_written_input_matches_the_measured_stats(tmp_path: Path) -> None:
    config = ScenarioConfig(seed=5, duration_s=600, rate_eps=100, mix=scaled_mix(0.1),
                            jitter_fraction=0.05, jitter_max_s=200)
    seen: list[int] = []
    stats = write_scenario(config, tmp_path / "EVENTS.jsonl", tmp_path / "labels.json", allowed_lateness_s=120,
                           progress=lambda n, _: seen.append(n), progress_every_s=0.0)
    events = [orjson.loads(line) for line in (tmp_path / "EVENTS.jsonl").read_bytes().splitlines()]
    assert stats.events == len(events) and seen[-1] == len(events)
    first: dict[str, int] = {}
    newest, late, too_late = -1, 0, 0
    for e in events:
        first[e["account_id"]] = min(first.get(e["account_id"], e["ts"]), e["ts"])
        if e["ts"] < newest:
            late += 1
            too_late += newest - e["ts"] > 120_000
        newest = max(newest, e["ts"])
    assert stats.first_event_ms == first
    output: dict[str, dict[int, int]] = {}
    for e in events:
        minutes = output.setdefault(e["account_id"], {})
        minute = e["ts"] // 60_000
        minutes[minute] = minutes.get(minute, 0) + e["completion_tokens"] + e.get("reasoning_tokens", 0)
    assert stats.output_by_minute == output
    assert (stats.out_of_order, stats.beyond_lateness) == (late, too_late)
    assert late > 0 and too_late > 0  # the jitter really produces late and too-late events
    assert stats.first_ts_ms == min(first.values()) and stats.last_ts_ms == newest
    labels = read_labels(tmp_path / "labels.json")
    assert stats.accounts_labelled == len(labels) == sum(config.mix.values())
    assert set(first) <= set(labels)


def test_table_shows_every_archetype_and_the_verdict(tmp_path: Path) -> None:
    config = ScenarioConfig(seed=5, duration_s=120, rate_eps=50, mix=scaled_mix(0.1))
    stats = write_scenario(config, tmp_path / "e.jsonl", tmp_path / "l.json", allowed_lateness_s=120)
    labels = read_labels(tmp_path / "l.json")
    attacker = next(a for a in sorted(stats.first_event_ms) if labels[a].is_attack)
    report = {"events_in": stats.events, "events_rejected": 0, "alerts": [], "clusters": [],
              "accounts": [{"account_id": attacker, "max_score": 88.0, "flagged": True,
                            "first_flagged_ts": "2026-02-12T00:30:00Z", "top_signals": []}]}
    result = {"config": {"scenario": config.model_dump(), "start": "2026-02-12T00:00:00Z", "mix_scale": 0.1,
                         "allowed_lateness_s": 120},
              "input": stats.to_json(), "timings_s": {"generate": 1.0, "replay": 20.0, "total": 21.5},
              **evaluate(labels, report, stats.first_event_ms, stats.output_by_minute)}
    text = render(result)
    for name in config.mix:
        assert name in text
    assert "harvested before the first alert: " in text and "(goal <= 1%)" in text
    assert "result: FAIL (1 of 5 targets)" in text  # one attacker, 30 min late: only the FP rate holds
    assert "not in the report" in text
    assert f"warning: {len(stats.first_event_ms) - 1} of {len(stats.first_event_ms)} accounts with events" in text
    assert "warning: the replay read" not in text


def test_duration_format() -> None:
    assert [duration(s) for s in (None, 0.4, 59.6, 61, 3599, 3600, 7500)] == \
        ["-", "0s", "1m00s", "1m01s", "59m59s", "1h00m", "2h05m"]


def run_cli(*args: str, timeout_s: float = 900.0) -> subprocess.CompletedProcess[str]:
    """The command in its own process group; on a timeout SIGTERM lets it stop its replay and worker."""
    proc = subprocess.Popen([sys.executable, "-m", "jobs.cli", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
        pytest.fail(f"distillwatch {' '.join(args)} did not finish within {timeout_s:.0f}s:\n{err[-3000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.slow
@pytest.mark.kafka
@pytest.mark.clickhouse
def test_eval_end_to_end_writes_a_well_formed_eval_json(tmp_path: Path) -> None:
    out_dir = tmp_path / "eval"
    done = run_cli("eval", "--out-dir", str(out_dir), "--duration", "120", "--rate", "50", "--mix-scale", "0.1",
                   "--jitter-fraction", "0.05", "--jitter-max", "200", "--check")
    assert done.returncode in (0, 1), done.stderr
    result = json.loads((out_dir / "eval.json").read_text())
    # --check gates on the targets, and only on them.
    assert done.returncode == (0 if result["passed"] else 1)
    assert "generate: done" in done.stderr and "replay: done" in done.stderr
    assert "result: " in done.stdout and "targets" in done.stdout

    events = (out_dir / "EVENTS.jsonl").read_bytes().count(b"\n")
    labels = json.loads((out_dir / "labels.json").read_text())
    report = json.loads((out_dir / "REPORT.json").read_text())
    assert result["input"]["events"] == events == report["events_in"] == result["report"]["events_in"]
    assert result["report"]["events_rejected"] == report["events_rejected"] == 0
    assert result["input"]["out_of_order"] > 0
    assert result["config"]["scenario"]["mix"] == scaled_mix(0.1)

    population = result["population"]
    assert population["labelled"] == len(labels) == population["active"] + population["silent"]
    summary = result["summary"]
    assert summary["accounts"] == population["active"] == summary["attackers"] + summary["benign"]
    assert set(result["per_attack_archetype"]) == set(ATTACKS) & set(DEFAULT_MIX)
    assert set(result["per_benign_archetype"]) == set(BENIGN)
    assert sum(m["accounts"] for m in result["per_attack_archetype"].values()) == summary["attackers"]
    assert sum(m["flagged"] for m in result["per_attack_archetype"].values()) == summary["true_positives"]
    by_archetype = Counter(v["archetype"] for v in labels.values())
    for name, m in {**result["per_attack_archetype"], **result["per_benign_archetype"]}.items():
        assert m["accounts"] + m["silent"] == by_archetype[name]
    for key in ("recall", "precision", "false_positive_rate"):
        assert summary[key] is None or 0.0 <= summary[key] <= 1.0
    assert len(result["undetected_attackers"]) == summary["false_negatives"]
    assert result["clusters"]["fleets"] >= 1
    assert [t["name"] for t in result["targets"]] == [t.name for t in TARGETS]
    assert result["passed"] == all(t["passed"] for t in result["targets"])
    assert all(isinstance(t["passed"], bool) for t in result["targets"])
    timings = result["timings_s"]
    assert 0 < timings["generate"] <= timings["total"] and 0 < timings["replay"] <= timings["total"]
