"""``ReportData`` → one self-contained HTML page (jobs.html_page): totals, plots, accounts, campaigns, alerts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from jobs.html_page import Html, esc, figure_png, key_values, page, section, table, tags
from jobs.investigate.campaign_rule import LINKED_BELOW
from jobs.ranking import TOP_ACCOUNTS
from jobs.report import plots
from jobs.report.data import MAX_ALERTS, MAX_CAMPAIGNS, ReportData

SIGNALS_SHOWN = 4
MEMBERS_SHOWN = 6
FEATURES_SHOWN = 4
SECTIONS = ("totals", "plots", "accounts", "campaigns", "alerts")


def render(data: ReportData, *, generated: datetime | None = None) -> str:
    """The report page for ``data``; ``generated`` (default now) is printed in the footer."""
    when = (generated or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    span = (f"{_minute(data.first_minute)} to {_minute(data.last_minute)} (event time, UTC)"
            if data.first_minute else "no traffic in the window")
    parts = [
        ("totals", "Pipeline totals", _totals(data)),
        ("plots", "Over time", _plots(data)),
        ("accounts", "Top accounts", _accounts(data)),
        ("campaigns", "Campaigns", _campaigns(data)),
        ("alerts", "Alerts timeline", _alerts(data)),
    ]
    return page(f"distillwatch report: {data.database}", [(a, t, section(t, body, anchor=a, note=n))
                                                          for a, t, (body, n) in parts],
                subtitle=span, footer=f"generated {when} by distillwatch report from ClickHouse database "
                                      f"{data.database}; queries: docs/cookbook.md")


def _minute(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "-"


def _totals(data: ReportData) -> tuple[str, str]:
    t = data.totals
    rejected_share = t["rejected"] / (t["events"] + t["rejected"]) if t["events"] + t["rejected"] else 0.0
    figures = key_values([
        ("time span", f"{_minute(data.first_minute)} - {_minute(data.last_minute)}" if data.first_minute else "-"),
        ("events (valid)", t["events"]),
        ("rejected (dead-lettered)", f"{t['rejected']:,} ({rejected_share:.2%})"),
        ("accounts", t["accounts"]),
        ("account-minutes scored", t["account_minutes"]),
        ("input tokens", t["input_tokens"]),
        ("output tokens (completion)", t["output_tokens"]),
        ("reasoning tokens", t["reasoning_tokens"]),
        ("calls answered with an error", t["error_calls"]),
        ("alerts", t["alerts"]),
        ("accounts alerted", t["alerted_accounts"]),
        ("active campaigns (cluster rule would alert)", t["campaigns"]),
        ("linked accounts below the campaign threshold (groups)", t["linked_groups"]),
    ])
    rejects = table(["reason", "field", "events", "example detail"],
                    [(r["reason"], r["field"], int(r["events"]), r["example"]) for r in data.rejects],
                    numeric=[2], wrap=[3], empty="no input rejected")
    models = table(["model", "calls", "output tokens", "reasoning tokens", "accounts"],
                   [(r["model"], int(r["calls"]), int(r["output_tokens"]), int(r["reasoning_tokens"]),
                     int(r["accounts"])) for r in data.models], numeric=[1, 2, 3, 4], empty="no traffic")
    body = Html(f"{figures}<h3>Rejected input by reason</h3>{rejects}<p class=\"note\">Rejected input has no "
                "event time: with --since/--until it is selected by the time it was received.</p>"
                f"<h3>Traffic by model</h3>{models}")
    return body, "Everything in the window; times are event time (UTC)."


def _plots(data: ReportData) -> tuple[str, str]:
    step = data.bucket_minutes
    if data.first_minute is None or data.last_minute is None:
        return Html('<p class="empty">no traffic in the window: nothing to plot</p>'), ""
    span = (step, *plot_range(data))
    figures = [
        (plots.traffic(data.traffic, *span), "Calls and output tokens per minute over time",
         f"traffic_1m, averaged over {step}-minute buckets"),
        (plots.scores(data.scores, *span), "Score distribution over time",
         "scores_1m: how many account-minutes scored in each band; a campaign shows as a dark upper band"),
        (plots.alerts(data.alerts_series, *span), "Alerts over time by rule", "alerts_1m"),
    ]
    body = "".join(figure_png(png, alt=alt, caption=f"{alt} ({cap})") if png else
                   f'<p class="empty">{alt}: no data in the window</p>' for png, alt, cap in figures)
    return Html(body), ""


def plot_range(data: ReportData) -> tuple[datetime, datetime]:
    """[start, end) of every plot: from the first traffic minute to after the last traffic minute or the last
    alert bucket, whichever is later (an alert fires at the end of its scored minute, so the last one can sit
    one minute past the traffic)."""
    if data.first_minute is None or data.last_minute is None:
        raise ValueError("no traffic in the window: nothing to plot")
    end = max([data.last_minute + timedelta(minutes=1),
               *(r["bucket"] + timedelta(minutes=data.bucket_minutes) for r in data.alerts_series)])
    return data.first_minute, end


def _accounts(data: ReportData) -> tuple[str, str]:
    rows = [(r["account_id"], round(float(r["peak_score"]), 1), int(r["calls"]), int(r["output_tokens"]),
             int(r["active_minutes"]), _minute(r["first_minute"]), int(r["alerts"]),
             _minute(r["first_alert"]) if r["alerts"] else "", r["cluster_id"], tags(r["signals"][:SIGNALS_SHOWN]))
            for r in data.top_accounts]
    body = table(["account", "peak score", "calls", "output tokens", "active min", "first seen", "alerts",
                  "first alert", "campaign", "signals at peak"], rows,
                 numeric=[1, 2, 3, 4, 6], mono=[0, 8], wrap=[9], empty="no scored accounts in the window")
    return body, (f"The {TOP_ACCOUNTS} highest peak scores in the window (account_scores_1h), with the signals of "
                  "each account's highest-scoring minute. Output tokens = completion + reasoning. "
                  "Dig further: distillwatch investigate ACCOUNT_ID.")


def _campaigns(data: ReportData) -> tuple[str, str]:
    campaigns = [c for c in data.campaigns if data.is_campaign(c)]
    below = [c for c in data.campaigns if not data.is_campaign(c)]
    at = f"{data.campaign_threshold:g}" if data.campaign_threshold is not None else "(no paging cluster rule)"
    body = Html(_cluster_table(campaigns, "no active campaign (cluster score at or above the cluster rule's "
                                          "threshold) in the window")
                + f"<h3>{esc(LINKED_BELOW[0].upper() + LINKED_BELOW[1:])}</h3>"
                + _cluster_table(below, "none", name="group"))
    return body, (f"Active clusters of linked accounts (clusters FINAL, active = 1), strongest first, at most "
                  f"{MAX_CAMPAIGNS}. A cluster is a campaign when its score reaches the cluster rule's threshold "
                  f"({at}, from the alert rules file): the rule would page. Output tokens: the members' completion "
                  "+ reasoning tokens in the window, in total and before the campaign's first page (calls before "
                  "its fired time; monitor-mode and suppressed alerts paged nobody).")


def _cluster_table(clusters: list[dict[str, Any]], empty: str, *, name: str = "campaign") -> str:
    rows = []
    for c in clusters:
        members = list(c["account_ids"])
        more = [f"+{len(members) - MEMBERS_SHOWN} more"] if len(members) > MEMBERS_SHOWN else []
        rows.append((c["cluster_id"], int(c["size"]), round(float(c["score"]), 1), int(c["output_tokens"] or 0),
                     int(c["output_before_alert"] or 0), _minute(c["first_seen"]), _minute(c["first_alert"]),
                     tags([*members[:MEMBERS_SHOWN], *more]), tags(c["shared_features"][:FEATURES_SHOWN])))
    return table([name, "size", "score", "output tokens", "before 1st page", "first linked", "first page",
                  "members", "shared features"], rows, numeric=[1, 2, 3, 4], mono=[0], wrap=[7, 8], empty=empty)


def _alerts(data: ReportData) -> tuple[str, str]:
    rows = [(r["fired_ts"], r["window_start"], r["account_id"], r["rule"], r["severity"], round(float(r["score"]), 1),
             r["mode"], r["suppressed_by"], tags(r["signals"][:SIGNALS_SHOWN])) for r in data.alerts]
    body = table(["fired at (event time)", "scored minute", "account", "rule", "severity", "score", "mode",
                  "suppressed by", "signals"], rows,
                 numeric=[5], mono=[2], wrap=[8], empty="no alerts in the window")
    shown = (f"the first {MAX_ALERTS} of {data.alerts_total:,}" if data.alerts_total > len(data.alerts)
             else f"all {len(data.alerts):,}")
    return body, (f"Alerts in the window in the order they fired ({shown}); an alert fires at the end of its "
                  "scored minute. Only pages that were not suppressed reached anyone.")
