"""``distillwatch eval``: generate a labelled scenario, replay it, score the report against the labels.

1. generate EVENTS.jsonl and labels.json with the load generator (every archetype);
2. run ``distillwatch replay`` on it in a child process, relaying its phases;
3. compute the metrics (jobs/eval/metrics.py), write eval.json, print the table.

The exit status is non-zero only for a failed run, or for missed targets under ``check``.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

import orjson

from jobs.eval import defaults
from jobs.eval.disk import check_free_space
from jobs.eval.feedback import feedback_counts
from jobs.eval.generalise import failures, generalisation, run_digest
from jobs.eval.metrics import evaluate
from jobs.eval.replay_child import replay_command, run_replay_child
from jobs.eval.scenario import (
    InputStats,
    OptionsError,
    parse_start,
    resolve_size,
    scaled_mix,
    varied_mix,
    write_scenario,
)
from jobs.eval.table import duration, render
from jobs.loadgen.archetypes import ARCHETYPES
from jobs.loadgen.population import Label
from jobs.loadgen.scenario import ScenarioConfig, population, with_accounts
from jobs.loadgen.variation import varied_fleet_size
from pipeline.settings import load_settings


@dataclass(frozen=True)
class EvalOptions:
    out_dir: Path = Path(defaults.OUT_DIR)
    events: int | None = None
    rate_eps: float | None = None  # None: from events and duration, or the default
    duration_s: float | None = None
    start: str = defaults.START
    seed: int = defaults.SEED
    mix_scale: float = defaults.MIX_SCALE
    accounts: tuple[str, ...] = ()  # NAME=COUNT: add or set an archetype's account count after mix_scale
    jitter_fraction: float = defaults.JITTER_FRACTION
    jitter_max_s: float = defaults.JITTER_MAX_S
    keep_state: bool = False  # keep the replay's ClickHouse under out_dir/replay-state for queries
    check: bool = False
    vary_seeds: int = 0  # after the default run, this many varied scenarios (the generalisation check)
    vary_events: int | None = None  # events of each varied run; None: as many as the default run
    vary_seed: int | None = None  # set on a varied run: perturb archetypes, mix and fleet size from it


def scenario_config(opts: EvalOptions) -> ScenarioConfig:
    rate, duration_s = resolve_size(opts.events, opts.rate_eps, opts.duration_s)
    try:
        mix = with_accounts(scaled_mix(opts.mix_scale), opts.accounts)
    except ValueError as exc:
        raise OptionsError(str(exc)) from None
    varied = opts.vary_seed
    return ScenarioConfig(
        seed=opts.seed, start_ms=parse_start(opts.start), duration_s=duration_s, rate_eps=rate,
        mix=mix if varied is None else varied_mix(varied, mix),
        fleet_size=ScenarioConfig().fleet_size if varied is None else varied_fleet_size(varied),
        jitter_fraction=opts.jitter_fraction, jitter_max_s=opts.jitter_max_s, vary_seed=varied,
    )


def varied_options(opts: EvalOptions) -> list[EvalOptions]:
    """The varied runs: seed and variation seed ``seed + k``, each in OUT_DIR/varied-SEED."""
    if opts.vary_seeds < 0:
        raise OptionsError("--vary-seeds must be >= 0")
    events = opts.events if opts.vary_events is None else opts.vary_events
    return [replace(opts, seed=opts.seed + k, vary_seed=opts.seed + k, vary_seeds=0, events=events,
                    out_dir=opts.out_dir / f"varied-{opts.seed + k}") for k in range(1, opts.vary_seeds + 1)]


def read_labels(path: Path) -> dict[str, Label]:
    raw = orjson.loads(path.read_bytes())
    return {account: Label(v["archetype"], bool(v["is_attack"]), v["fleet_id"]) for account, v in raw.items()}


class _Log:
    """Progress lines on stderr, stamped with the time since the evaluation started."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        print(f"[{duration(time.monotonic() - self.started):>6}] {message}", file=self.stream, flush=True)


def _clock(ms: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ms / 1000))


def _run_one(opts: EvalOptions, log: _Log) -> dict[str, Any]:
    """Generate, replay and score one scenario; writes its eval.json and returns it."""
    config = scenario_config(opts)
    try:  # built once, reused by write_scenario: a mix whose quiet accounts overfill the rate fails before any file
        population(config)
    except ValueError as exc:
        raise OptionsError(str(exc)) from None
    settings = load_settings()  # the DW_* environment the replay's worker will also see
    out_dir = opts.out_dir
    events_path, labels_path = out_dir / "EVENTS.jsonl", out_dir / "labels.json"
    report_path, eval_path = out_dir / "REPORT.json", out_dir / "eval.json"
    eval_path.unlink(missing_ok=True)  # a failed run must not leave the previous verdict behind
    attackers = sum(n for name, n in config.mix.items() if ARCHETYPES[name].is_attack)
    log(f"eval: {sum(config.mix.values())} accounts ({attackers} attacking), ~{config.expected_events:,} events "
        f"over {duration(config.duration_s)} of event time from {_clock(config.start_ms)} UTC -> {out_dir}")

    t0 = time.monotonic()
    end_ms = config.start_ms + config.duration_s * 1000

    def generation_progress(n: int, newest_ms: int) -> None:
        share = n / config.expected_events if config.expected_events else 1.0
        log(f"generate: {n:,} events ({share:.0%}), event time {_clock(newest_ms)} of {_clock(end_ms)}")

    stats = write_scenario(config, events_path, labels_path, allowed_lateness_s=settings.allowed_lateness_s,
                           progress=generation_progress)
    generate_s = time.monotonic() - t0
    log(f"generate: done in {duration(generate_s)}: {stats.events:,} events, {stats.out_of_order:,} out of order "
        f"({stats.beyond_lateness:,} beyond the {settings.allowed_lateness_s}s allowed lateness) -> {events_path}")

    # A scratch state dir unless kept: the analyst feedback is read from it after the replay.
    state_dir = out_dir / "replay-state" if opts.keep_state else Path(tempfile.mkdtemp(prefix="dw-eval-replay-"))
    if opts.keep_state and state_dir.exists():
        shutil.rmtree(state_dir)  # a replay into old tables would report old results too
    log("replay: " + " ".join(replay_command(events_path, report_path, state_dir)))
    t1 = time.monotonic()
    try:
        run_replay_child(events_path, report_path, data_dir=state_dir, log=log)
        replay_s = time.monotonic() - t1
        feedback = feedback_counts(state_dir)
    finally:
        if not opts.keep_state:
            shutil.rmtree(state_dir, ignore_errors=True)
    log(f"replay: done in {duration(replay_s)}")

    t2 = time.monotonic()
    report = orjson.loads(report_path.read_bytes())
    metrics = evaluate(read_labels(labels_path), report, stats.first_event_ms, stats.output_by_minute)
    result = _result(opts, config, settings.allowed_lateness_s, settings.alert_score_threshold, stats, metrics)
    result["analyst_feedback"] = feedback
    result["timings_s"] = {"generate": round(generate_s, 2), "replay": round(replay_s, 2),
                           "metrics": round(time.monotonic() - t2, 2),
                           "total": round(time.monotonic() - log.started, 2)}
    result["files"] = {"events": str(events_path), "labels": str(labels_path), "report": str(report_path),
                       "eval": str(eval_path), "replay_state": str(state_dir) if opts.keep_state else None}
    eval_path.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    return result


def run_eval(opts: EvalOptions, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """The default scenario, then the varied ones; the default's eval.json gets the comparison."""
    log = _Log(err)
    varied_opts = varied_options(opts)
    check_free_space([(o.out_dir, scenario_config(o).expected_events) for o in (opts, *varied_opts)],
                     keep_state=opts.keep_state, scratch=Path(tempfile.gettempdir()))
    result = _run_one(opts, log)
    if varied_opts:
        digests = []
        for k, vopts in enumerate(varied_opts, 1):
            log(f"varied run {k} of {len(varied_opts)}: seed {vopts.seed}")
            varied = _run_one(vopts, log)
            print(render(varied), file=out, flush=True)
            print(f"written: {varied['files']['eval']}\n", file=out, flush=True)
            digests.append(run_digest(varied))
        result["generalisation"] = generalisation(digests)
        result["passed"] = result["passed"] and result["generalisation"]["passed"]
        result["timings_s"]["all_runs"] = round(time.monotonic() - log.started, 2)
        Path(result["files"]["eval"]).write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
    print(render(result), file=out, flush=True)
    print(f"written: {result['files']['eval']}", file=out, flush=True)
    missed = failures(result)
    for line in missed:
        print(f"missed target: {line}", file=out, flush=True)
    return 1 if opts.check and missed else 0


def _result(opts: EvalOptions, config: ScenarioConfig, lateness_s: int, threshold: float | None,
            stats: InputStats, metrics: dict[str, Any]) -> dict[str, Any]:
    return {
        "config": {
            "scenario": config.model_dump(),
            "start": opts.start,
            "mix_scale": opts.mix_scale,
            "accounts": list(opts.accounts),
            "events_requested": opts.events,
            "allowed_lateness_s": lateness_s,
            "alert_score_threshold_override": threshold,
            "check": opts.check,
        },
        "input": stats.to_json(),
        **metrics,
    }
