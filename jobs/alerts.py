"""``distillwatch alerts``: list alerts with their analyst feedback, and record verdicts.

``alerts list`` groups the ``alerts`` table by (account, rule) over a window of wall-clock
time (``--since``, default 24h) and shows each group's newest covering verdict from
``alert_feedback``. ``alerts ack|resolve|false-positive|confirm ACCOUNT --reason TEXT`` writes
one verdict (pipeline/alerting/feedback.py); a false positive stops paging for the account
(and ``--rule``, default every rule) for DW_FEEDBACK_SUPPRESS_DAYS.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from clickhouse_connect.driver.client import Client

from jobs.ch_options import clickhouse_options, open_clickhouse
from jobs.since import check_since_option, parse_since
from pipeline.alerting.feedback import (
    ALL_RULES,
    FALSE_POSITIVE,
    Feedback,
    latest_covering,
    load_feedback,
    new_feedback,
    record,
)
from pipeline.sinks.clickhouse import ClickHouseError, query_rows
from schemas.tables import ALERTS, SIGNATURES_1M


@dataclass(frozen=True)
class AlertGroup:
    """The alerts of one account and rule in the window, with the verdict that covers them."""

    account_id: str
    rule: str
    severity: str  # of the newest alert
    firings: int
    first_fired_ms: int
    last_fired_ms: int
    max_score: float
    cluster_id: str
    mode: str
    suppressed: int  # alerts recorded as suppressed (allow-list, feedback) instead of paged
    feedback: Feedback | None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["first_fired"], out["last_fired"] = iso(self.first_fired_ms), iso(self.last_fired_ms)
        del out["first_fired_ms"], out["last_fired_ms"]
        fb = self.feedback
        out["feedback"] = None if fb is None else {
            "verdict": fb.verdict, "rule": fb.rule, "reason": fb.reason, "analyst": fb.analyst,
            "recorded_at": iso(fb.recorded_at_ms), "feedback_id": fb.feedback_id,
            "suppress_until": iso(fb.suppress_until_ms) if fb.verdict == FALSE_POSITIVE else None}
        return out


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def list_alerts(client: Client, database: str, *, since_s: int | None, rule: str | None = None,
                account: str | None = None, now_ms: int | None = None) -> list[AlertGroup]:
    """Alerts fired in the last ``since_s`` seconds (None: all), newest group first."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    where: list[str] = ["1"]
    params: dict[str, Any] = {}
    if since_s is not None:
        where.append("fired_ts >= fromUnixTimestamp64Milli({since:Int64}, 'UTC')")
        params["since"] = now - since_s * 1000
    if rule is not None:
        where.append("rule = {rule:String}")
        params["rule"] = rule
    if account is not None:
        where.append("account_id = {account:String}")
        params["account"] = account
    sql = (f"SELECT account_id, rule, argMax(severity, fired_ts) AS severity, count() AS firings, "
           f"toUnixTimestamp64Milli(min(fired_ts)) AS first_ms, toUnixTimestamp64Milli(max(fired_ts)) AS last_ms, "
           f"max(score) AS max_score, argMax(cluster_id, fired_ts) AS cluster_id, argMax(mode, fired_ts) AS mode, "
           f"countIf(suppressed_by != '') AS suppressed "
           f"FROM {ALERTS.qualified(database)} FINAL WHERE {' AND '.join(where)} "
           f"GROUP BY account_id, rule ORDER BY last_ms DESC, account_id, rule")
    rows = query_rows(client, sql, params)
    accounts = sorted({r["account_id"] for r in rows})
    by_account: dict[str, list[Feedback]] = {}
    for fb in load_feedback(client, database, accounts=accounts) if accounts else []:
        by_account.setdefault(fb.account_id, []).append(fb)
    return [AlertGroup(r["account_id"], r["rule"], r["severity"], int(r["firings"]), int(r["first_ms"]),
                       int(r["last_ms"]), round(float(r["max_score"]), 2), r["cluster_id"], r["mode"],
                       int(r["suppressed"]), latest_covering(by_account.get(r["account_id"], []), r["rule"]))
            for r in rows]


def render_table(groups: list[AlertGroup]) -> str:
    head = ("account", "rule", "severity", "alerts", "first fired", "last fired", "max score", "cluster", "feedback")
    rows = [head]
    for g in groups:
        rows.append((g.account_id, g.rule, g.severity + (f" ({g.mode})" if g.mode not in ("", "page") else ""),
                     str(g.firings) + (f" ({g.suppressed} suppressed)" if g.suppressed else ""),
                     iso(g.first_fired_ms), iso(g.last_fired_ms), f"{g.max_score:.1f}", g.cluster_id or "-",
                     _feedback_text(g.feedback)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _feedback_text(fb: Feedback | None) -> str:
    if fb is None:
        return "-"
    text = f"{fb.verdict} by {fb.analyst} {iso(fb.recorded_at_ms)}"
    if fb.verdict == FALSE_POSITIVE:
        text += f" (no paging until {iso(fb.suppress_until_ms)})"
    return f"{text}: {fb.reason}"


def account_seen(client: Client, database: str, account: str) -> tuple[int, int]:
    """(alerts, signature minutes) stored for ``account``."""
    counts = []
    for spec in (ALERTS, SIGNATURES_1M):
        sql = f"SELECT count() AS n FROM {spec.qualified(database)} WHERE account_id = {{a:String}}"
        rows = query_rows(client, sql, {"a": account})
        counts.append(int(rows[0]["n"]))
    return counts[0], counts[1]


# --- the commands -------------------------------------------------------------------------


@click.group("alerts")
def alerts() -> None:
    """List alerts with their analyst feedback; record verdicts (ack, resolve, false-positive, confirm)."""


@alerts.command("list")
@click.option("--since", "since", default="24h", show_default=True, callback=check_since_option,
              help="window of fired time: 30m, 24h, 7d or all")
@click.option("--rule", help="only this rule")
@click.option("--account", help="only this account")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@clickhouse_options
def list_command(since: str, rule: str | None, account: str | None, fmt: str, clickhouse: str | None,
                 data_dir: Path | None) -> None:
    """Alerts per account and rule, newest first, with the verdict that covers them."""
    since_s = parse_since(since)  # checked by the option's callback
    client, settings = open_clickhouse(clickhouse, data_dir)
    try:
        groups = list_alerts(client, settings.clickhouse_database, since_s=since_s, rule=rule, account=account)
    except ClickHouseError as exc:
        raise click.ClickException(str(exc)) from None
    if fmt == "json":
        click.echo(json.dumps([g.to_json() for g in groups], indent=2))
    elif groups:
        click.echo(render_table(groups))
    else:
        click.echo(f"no alerts in the last {since}" if since_s is not None else "no alerts", err=True)


def _record_command(verdict: str, name: str, summary: str) -> None:
    @alerts.command(name, help=f"{summary}\n\nACCOUNT is the account id; --reason is required.")
    @click.argument("account")
    @click.option("--reason", required=True, help="why: shown to the next on-call and in reports")
    @click.option("--rule", default=ALL_RULES, help="only this rule (default: every rule)")
    @click.option("--analyst", default=None, help="who decided (default: $USER)")
    @clickhouse_options
    def command(account: str, reason: str, rule: str, analyst: str | None, clickhouse: str | None,
                data_dir: Path | None) -> None:
        if not reason.strip():
            raise click.BadParameter("must not be empty: say why, for the next on-call", param_hint="--reason")
        who = (analyst or os.environ.get("USER", "")).strip()
        if not who:
            raise click.BadParameter("no analyst: give --analyst NAME (or set $USER)", param_hint="--analyst")
        client, settings = open_clickhouse(clickhouse, data_dir)
        database = settings.clickhouse_database
        try:
            entry = new_feedback(account, verdict, reason, who, rule=rule,
                                 suppress_days=settings.feedback_suppress_days)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
        try:
            n_alerts, n_minutes = account_seen(client, database, entry.account_id)
            if n_alerts == 0 and n_minutes == 0:
                click.echo(f"warning: account {entry.account_id!r} has no alerts and no signatures in "
                           f"{database}; check the id (recorded anyway)", err=True)
            elif rule and not list_alerts(client, database, since_s=None, rule=rule, account=entry.account_id):
                click.echo(f"warning: account {entry.account_id!r} has no alerts of rule {rule!r} "
                           f"(recorded anyway)", err=True)
            record(client, database, entry)
        except ClickHouseError as exc:
            raise click.ClickException(str(exc)) from None
        scope = f"rule {rule}" if rule else "every rule"
        line = f"recorded {verdict} for {entry.account_id} ({scope}) by {who}: {entry.feedback_id}"
        if verdict == FALSE_POSITIVE:
            line += f"; no paging until {iso(entry.suppress_until_ms)}"
        click.echo(line)


_record_command("ack", "ack", "Acknowledge an account's alerts (someone is on it).")
_record_command("resolved", "resolve", "Mark an account's alerts handled.")
_record_command("false_positive", "false-positive",
                "Mark an account's alerts a false positive: no paging for it (and --rule) for "
                "DW_FEEDBACK_SUPPRESS_DAYS.")
_record_command("confirmed", "confirm", "Confirm an attack (lifts an earlier false positive).")
