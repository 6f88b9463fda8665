"""``distillwatch backtest``: what a rules file would have fired over the stored history, before enabling it.

Reads ``signatures_1m`` (FINAL, sorted by account_id, window_start) in column blocks and runs the rules
engine's ``evaluate_accounts``, the function the live worker calls, on chunks of them, so the rules in
force flag here exactly the accounts they flagged live. The candidate rules (``--rules``) and the rules
in force run in one pass. Input, report and what is not applied: docs/alerting.md, "Backtesting".
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import numpy as np
from clickhouse_connect.driver.client import Client

from jobs.backtest_clusters import evaluate_clusters
from jobs.ch_options import clickhouse_options, open_clickhouse
from jobs.since import check_since_option, parse_since
from pipeline.alerting.allowlist import AllowList, AllowListError, load_allowlist
from pipeline.alerting.condition import SIGNAL_PREFIX
from pipeline.alerting.engine import AlertBatch, AlertContext, AlertSetup, AlertState, evaluate_accounts
from pipeline.alerting.feedback import FeedbackSuppressions
from pipeline.alerting.rules import ACCOUNT, RulesError, RuleSet, load_rules
from pipeline.linking.results_consumer import current_clusters
from pipeline.scoring import load_scoring_config
from pipeline.scoring.config import ScoringConfigError
from pipeline.settings import Settings
from pipeline.sinks.clickhouse import ClickHouseError, query_rows
from schemas.tables import SIGNATURES_1M

CHUNK_ROWS = 200_000  # account-minutes per engine call: bounded memory, few calls
Log = Callable[[str], None]


@dataclass(frozen=True)
class BacktestOptions:
    """What to evaluate over which history (``options_from_settings`` builds it as the command does)."""

    rules: RuleSet  # the candidate
    baseline: RuleSet  # the rules in force; the same object means no diff to compute
    since_s: int | None = None  # window_start within the last since_s seconds of wall time; None: all
    now_ms: int | None = None  # the window's end (default: now)
    chunk_rows: int = CHUNK_ROWS
    signals: tuple[str, ...] | None = None  # the scoring file's signal names (None: the packaged file's)
    allowlist: AllowList = field(default_factory=AllowList)  # DW_ALLOWLIST, as live


@dataclass
class AccountFiring:
    """One rule's firings for one account over the history."""

    account_id: str
    rule: str
    first_fire_ms: int
    firings: int = 1
    max_score: float = 0.0
    cluster_id: str = ""
    suppressed_by: str = ""  # of the first firing: allowlist:<id> / false_positive:<id> / ""
    mode: str = ""


@dataclass
class BacktestResult:
    """Every (rule, account) that would fire under the candidate and under the rules in force."""

    account_minutes: int
    accounts_seen: int
    rules: RuleSet
    baseline: RuleSet
    firings: dict[tuple[str, str], AccountFiring]  # (rule, account) under the candidate rules
    baseline_firings: dict[tuple[str, str], AccountFiring]
    feedback: FeedbackSuppressions
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def accounts(self) -> list[AccountFiring]:
        return sorted(self.firings.values(), key=lambda f: (f.rule, f.first_fire_ms, f.account_id))

    def newly_firing(self, rule: str) -> list[str]:
        return sorted(a for r, a in self.firings if r == rule and (r, a) not in self.baseline_firings)

    def no_longer_firing(self, rule: str) -> list[str]:
        return sorted(a for r, a in self.baseline_firings if r == rule and (r, a) not in self.firings)

    def rule_names(self) -> list[str]:
        names = [r.name for r in self.rules.rules]
        return names + [r.name for r in self.baseline.rules if r.name not in names]


# --- reading ---------------------------------------------------------------------------------


def _since_ms(opts: BacktestOptions) -> int | None:
    if opts.since_s is None:
        return None
    now = int(time.time() * 1000) if opts.now_ms is None else opts.now_ms
    return now - opts.since_s * 1000


def _window(opts: BacktestOptions) -> tuple[str, dict[str, Any]]:
    since = _since_ms(opts)
    if since is None:
        return "1", {}
    return "window_start >= toDateTime({since:Int64}, 'UTC')", {"since": since // 1000}


def _columns_needed(rule_sets: list[RuleSet]) -> list[str]:
    plain = {c for rs in rule_sets for c in rs.account_columns if not c.startswith(SIGNAL_PREFIX)}
    return sorted(plain - {"account_id", "window_start", "score"})


def read_chunks(client: Client, database: str, opts: BacktestOptions, signals: list[str],
                extra: list[str]) -> Iterator[dict[str, Any]]:
    """signatures_1m in the window as engine input dicts of about ``chunk_rows`` rows, in
    (account_id, window_start) order. Each signal's points come as one column computed by
    ClickHouse (0 where a row does not list it), so no per-row arrays reach Python."""
    where, params = _window(opts)
    selected = ["account_id", "toUnixTimestamp(window_start) AS window_start", "score"]
    selected += [f"`{c}`" for c in extra]
    selected += [f"signal_points[indexOf(signal_names, {{s{i}:String}})] AS `s{i}`" for i in range(len(signals))]
    params.update({f"s{i}": name for i, name in enumerate(signals)})
    sql = (f"SELECT {', '.join(selected)} FROM {SIGNATURES_1M.qualified(database)} FINAL WHERE {where} "
           f"ORDER BY account_id, window_start")
    names = ["account_id", "window_start", "score", *extra, *(f"s{i}" for i in range(len(signals)))]
    pending: list[tuple[Any, ...]] = []
    held = 0
    with client.query_column_block_stream(sql, parameters=params) as blocks:
        for block in blocks:
            pending.append(block)
            held += len(block[0])
            if held >= opts.chunk_rows:
                yield _engine_input(pending, names, signals)
                pending, held = [], 0
    if held:
        yield _engine_input(pending, names, signals)


def _engine_input(blocks: list[tuple[Any, ...]], names: list[str], signals: list[str]) -> dict[str, Any]:
    columns: dict[str, Any] = {}
    for j, name in enumerate(names):
        parts = [b[j] for b in blocks]
        if name == "account_id":
            columns[name] = np.array([a for p in parts for a in p], dtype=object)
        else:
            columns[name] = np.concatenate([np.asarray(p) for p in parts])
    n = len(columns["account_id"])
    columns["window_start"] = columns["window_start"].astype(np.int64)
    # One scoring version for every row: the engine's fast path (one matrix, one list of names).
    columns["signal_points"] = (np.column_stack([columns.pop(f"s{i}") for i in range(len(signals))])
                                if signals else np.zeros((n, 0), np.float32))
    columns["signal_names"] = [signals] * n  # empty when no rule reads a signal
    return columns


def count_rows(client: Client, database: str, opts: BacktestOptions) -> int:
    """Rows in the window (before FINAL collapses replaced ones): for progress only."""
    where, params = _window(opts)
    rows = query_rows(client, f"SELECT count() AS n FROM {SIGNATURES_1M.qualified(database)} WHERE {where}", params)
    return int(rows[0]["n"])


# --- evaluation ------------------------------------------------------------------------------


def _collect(found: AlertBatch, into: dict[tuple[str, str], AccountFiring]) -> None:
    a = found.alerts
    for i in range(len(a)):
        key = (a.rule[i], a.account_id[i])
        seen = into.get(key)
        if seen is None:
            into[key] = AccountFiring(a.account_id[i], a.rule[i], a.fired_ms[i], 1, a.scores[i], a.cluster_id[i],
                                      a.suppressed_by[i], a.mode[i])
        else:
            seen.firings += 1
            seen.max_score = max(seen.max_score, a.scores[i])


def run_backtest(client: Client, database: str, opts: BacktestOptions, *, log: Log | None = None) -> BacktestResult:
    """Evaluate ``opts.rules`` (and ``opts.baseline`` when it is another rule set) over the history."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    feedback = FeedbackSuppressions.load(client, database)
    clusters = current_clusters(client, database)
    context = AlertContext(feedback=feedback, cluster_of=clusters.get)
    setups = [AlertSetup(opts.rules, opts.allowlist, context=context)]
    if opts.baseline is not opts.rules:
        setups.append(AlertSetup(opts.baseline, opts.allowlist, context=context))
    states = [AlertState() for _ in setups]
    found: list[dict[tuple[str, str], AccountFiring]] = [{} for _ in setups]
    # Signal points are read only when a condition reads one: the report lists no signals.
    wanted = any(c.startswith(SIGNAL_PREFIX) for s in setups for c in s.rules.account_columns)
    signals = list(load_scoring_config().signals if opts.signals is None else opts.signals) if wanted else []
    extra = _columns_needed([s.rules for s in setups])
    total = count_rows(client, database, opts) if log is not None else 0
    timings["prepare"] = time.perf_counter() - started
    done = accounts = 0
    last_account = None
    read_s = eval_s = 0.0
    mark = time.perf_counter()
    for chunk in read_chunks(client, database, opts, signals, extra):
        got = time.perf_counter()
        read_s += got - mark
        ids = chunk["account_id"]
        changes = int(np.count_nonzero(ids[1:] != ids[:-1])) + 1
        accounts += changes - (1 if ids[0] == last_account else 0)
        last_account = ids[-1]
        for setup, state, into in zip(setups, states, found, strict=True):
            _collect(evaluate_accounts(setup, chunk, state, now_ms=None), into)
        done += len(ids)
        mark = time.perf_counter()
        eval_s += mark - got
        if log is not None:
            share = f" ({done / total:.0%})" if total else ""
            log(f"backtest: {done:,} account-minutes{share}, {len(found[0]):,} (rule, account) firing")
    mark = time.perf_counter()
    for batch, into in zip(evaluate_clusters(client, database, setups, _since_ms(opts)), found, strict=True):
        _collect(batch, into)
    timings.update(read=read_s, evaluate=eval_s, clusters=time.perf_counter() - mark,
                   total=time.perf_counter() - started)
    return BacktestResult(done, accounts, opts.rules, opts.baseline, found[0], found[-1], feedback, timings)


# --- output ----------------------------------------------------------------------------------


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def _mark(result: BacktestResult, account: str) -> str:
    verdict = result.feedback.verdict_of(account)
    return {"false_positive": "known false positive", "confirmed": "confirmed attack"}.get(verdict or "", "")


def to_json(result: BacktestResult, *, since: str) -> dict[str, Any]:
    rules = []
    for name in result.rule_names():
        firing = [f for f in result.accounts if f.rule == name]
        rules.append({
            "rule": name, "subject": _subject(result, name), "accounts": len(firing),
            "campaigns": sorted({f.cluster_id for f in firing if f.cluster_id}),
            "first_fire": _iso(min(f.first_fire_ms for f in firing)) if firing else None,
            "newly_firing": result.newly_firing(name), "no_longer_firing": result.no_longer_firing(name),
        })
    return {
        "since": since, "rules_file": str(result.rules.source), "rules_in_force": str(result.baseline.source),
        "account_minutes": result.account_minutes, "accounts_seen": result.accounts_seen, "rules": rules,
        "accounts": [{"account_id": f.account_id, "rule": f.rule, "first_fire": _iso(f.first_fire_ms),
                      "firings": f.firings, "max_score": round(f.max_score, 2), "cluster_id": f.cluster_id,
                      "mode": f.mode, "suppressed_by": f.suppressed_by,
                      "feedback": result.feedback.verdict_of(f.account_id),
                      "new": (f.rule, f.account_id) not in result.baseline_firings} for f in result.accounts],
        "seconds": round(result.timings.get("total", 0.0), 3),
    }


def _subject(result: BacktestResult, name: str) -> str:
    for rs in (result.rules, result.baseline):
        for r in rs.rules:
            if r.name == name:
                return r.rule.subject
    return ACCOUNT


def render(result: BacktestResult, *, since: str, max_rows: int = 50) -> str:
    same = result.rules is result.baseline
    lines = [f"backtest of {result.rules.source} over {result.account_minutes:,} account-minutes "
             f"({result.accounts_seen:,} accounts, since {since})"
             + ("" if same else f"; compared with the rules in force, {result.baseline.source}")]
    for name in result.rule_names():
        firing = [f for f in result.accounts if f.rule == name]
        subject = _subject(result, name)
        campaigns = sorted({f.cluster_id for f in firing if f.cluster_id})
        lines += ["", f"rule {name} ({subject}): {len(firing)} accounts would fire, {len(campaigns)} campaigns"
                  + (f": {', '.join(campaigns[:10])}" + (" …" if len(campaigns) > 10 else "") if campaigns else "")]
        if firing:
            rows = [("account", "first fire", "firings", "max score", "cluster", "suppressed by", "feedback")]
            for f in firing[:max_rows]:
                rows.append((f.account_id + (" (new)" if not same and (name, f.account_id)
                                             not in result.baseline_firings else ""),
                             _iso(f.first_fire_ms), str(f.firings), f"{f.max_score:.1f}", f.cluster_id or "-",
                             f.suppressed_by or "-", _mark(result, f.account_id) or "-"))
            widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
            lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
            if len(firing) > max_rows:
                lines.append(f"  … and {len(firing) - max_rows} more (--json lists every one)")
        if not same:
            new, gone = result.newly_firing(name), result.no_longer_firing(name)
            lines.append(f"  newly firing ({len(new)}): {_some(new)}")
            lines.append(f"  no longer firing ({len(gone)}): {_some(gone)}")
    fp = {f.account_id for f in result.accounts} & result.feedback.false_positive_accounts
    confirmed = {f.account_id for f in result.accounts} & result.feedback.confirmed_accounts
    lines += ["", f"analyst feedback: {len(fp)} of the firing accounts are known false positives, "
                  f"{len(confirmed)} confirmed attacks"]
    return "\n".join(lines)


def _some(names: list[str], limit: int = 20) -> str:
    if not names:
        return "none"
    return ", ".join(names[:limit]) + (f" … (+{len(names) - limit})" if len(names) > limit else "")


# --- the command -----------------------------------------------------------------------------


def options_from_settings(settings: Settings, rules_path: Path | None, since_s: int | None) -> BacktestOptions:
    """The candidate (``rules_path``, default the rules in force) against the rules in force, with the
    scoring file's signals and the allow-list of ``settings``; raises the loaders' errors."""
    scoring = load_scoring_config(settings.scoring_config)
    in_force = load_rules(settings.alert_rules, scoring=scoring, score_threshold=settings.alert_score_threshold)
    rules = in_force if rules_path is None else load_rules(rules_path, scoring=scoring)
    return BacktestOptions(rules=rules, baseline=in_force, since_s=since_s, signals=tuple(scoring.signals),
                           allowlist=load_allowlist(settings.allowlist))


@click.command("backtest")
@click.option("--rules", "rules_path", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="candidate rules file (default: the rules in force, DW_ALERT_RULES or the packaged one)")
@click.option("--since", default="7d", show_default=True, callback=check_since_option,
              help="history to replay: 30m, 24h, 7d or all")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object (its 'accounts' list every firing)")
@clickhouse_options
def backtest(rules_path: Path | None, since: str, as_json: bool, clickhouse: str | None,
             data_dir: Path | None) -> None:
    """Evaluate a rules file over the stored signatures_1m history, without Kafka, and compare it with
    the rules in force."""
    since_s = parse_since(since)  # checked by the option's callback
    client, settings = open_clickhouse(clickhouse, data_dir)
    try:
        opts = options_from_settings(settings, rules_path, since_s)
    except (RulesError, AllowListError, ScoringConfigError) as exc:
        raise click.ClickException(str(exc)) from None
    try:
        result = run_backtest(client, settings.clickhouse_database, opts, log=lambda m: click.echo(m, err=True))
    except ClickHouseError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(to_json(result, since=since), indent=2))
    else:
        click.echo(render(result, since=since))
    click.echo(f"backtest: {result.account_minutes:,} account-minutes in {result.timings['total']:.1f}s", err=True)
