"""Dashboard 2, "Account drill-down" (variable ``account``): everything known about one account.

Per-account panels read signatures_1m (one row per account-minute), the hourly
rollups account_scores_1h and account_entities_1h, the account's alerts and the
current clusters; every other dashboard links its account ids here.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import table
from grafana_foundation_sdk.models.dashboard import Dashboard, DynamicConfigValue

from jobs.grafana.links import ACCOUNT, ACCOUNT_VAR
from jobs.grafana.panels import (
    COUNT,
    PER_SECOND,
    RATE,
    SCORE,
    SHARE,
    base_dashboard,
    ch_stat,
    ch_table,
    ch_timeseries,
    ch_variable,
    finish,
)
from jobs.grafana.sql_parts import (
    HOURS_IN_RANGE,
    campaign_min_score,
    cluster_members_sql,
    is_campaign,
    sql_string_var,
)
from jobs.ranking import OUTPUT_TOKENS_SUM

ACCOUNT_SQL = sql_string_var(ACCOUNT_VAR)
THIS_ACCOUNT = f"account_id = {ACCOUNT_SQL}"
IN_RANGE = "$__timeFilter(window_start)"
FRAMES = f"signatures_1m WHERE {THIS_ACCOUNT} AND {IN_RANGE}"
HOURS = f"account_scores_1h WHERE {THIS_ACCOUNT} AND {HOURS_IN_RANGE}"  # the hourly rollup's rows

ACCOUNT_CHOICES_SQL = f"""
    SELECT account_id
    FROM account_scores_1h
    WHERE {HOURS_IN_RANGE}
    GROUP BY account_id
    ORDER BY max(max_score) DESC, account_id
    LIMIT 1000
"""


def entities_sql(kinds: tuple[str, ...]) -> str:
    """The account's values of these account_entities_1h kinds, and how many other accounts share each."""
    kind_list = ", ".join(f"'{kind}'" for kind in kinds)
    mine = f"{THIS_ACCOUNT} AND kind IN ({kind_list}) AND {HOURS_IN_RANGE}"
    return f"""
        SELECT e.kind AS kind, e.value AS value, e.calls AS calls, e.output_tokens AS output_tokens,
               greatest(o.accounts, 1) - 1 AS other_accounts, e.first_seen AS first_seen, e.last_seen AS last_seen
        FROM (
            SELECT kind, value, sum(calls) AS calls, {OUTPUT_TOKENS_SUM} AS output_tokens,
                   min(first_seen) AS first_seen, max(last_seen) AS last_seen
            FROM account_entities_1h
            WHERE {mine}
            GROUP BY kind, value
        ) AS e
        LEFT JOIN (
            -- other accounts with the same value in the range: a shared key, network or template links them
            SELECT kind, value, uniqExact(account_id) AS accounts
            FROM account_entities_1h
            WHERE kind IN ({kind_list}) AND {HOURS_IN_RANGE}
              AND (kind, value) IN (SELECT kind, value FROM account_entities_1h WHERE {mine})
            GROUP BY kind, value
        ) AS o ON o.kind = e.kind AND o.value = e.value
        ORDER BY calls DESC, kind, value
        LIMIT 200
    """


def _entity_table(title: str, description: str, kinds: tuple[str, ...]) -> table.Panel:
    return ch_table(title, f"{description} From account_entities_1h; output_tokens are completion + reasoning "
                    "tokens; other_accounts counts the accounts that share the value in the range.",
                    entities_sql(kinds), w=12, h=8, units={"output_tokens": COUNT})


def build() -> Dashboard:
    d = base_dashboard(ACCOUNT, "One account: its score and why, its traffic, where it comes from, its keys and "
                                "templates, its alerts and the campaigns it belongs to.")
    d.with_variable(ch_variable(ACCOUNT_VAR, "Account", "Accounts with frames in the range, riskiest first; type any "
                                "account id.", ACCOUNT_CHOICES_SQL))

    d.with_panel(ch_stat("Max score", "Highest per-minute score of the account in the range (account_scores_1h).",
                         f"SELECT max(max_score) AS max_score FROM {HOURS}", SCORE))
    d.with_panel(ch_stat("Calls", "Calls of the account in the range (account_scores_1h).",
                         f"SELECT sum(calls) AS calls FROM {HOURS}", COUNT))
    d.with_panel(ch_stat("Output tokens", "Completion and reasoning tokens the account received in the range "
                         "(account_scores_1h).", f"SELECT {OUTPUT_TOKENS_SUM} AS output_tokens FROM {HOURS}", COUNT))
    d.with_panel(ch_stat("Reasoning share", "Share of the account's calls that elicited reasoning "
                         "(account_scores_1h).",
                         f"SELECT sum(reasoning_calls) / greatest(sum(calls), 1) AS reasoning_share FROM {HOURS}",
                         SHARE))
    d.with_panel(ch_stat("Alerts", "Alerts fired for the account in the range (alerts).",
                         f"SELECT count() AS alerts FROM alerts WHERE {THIS_ACCOUNT} AND $__timeFilter(fired_ts)",
                         COUNT))
    d.with_panel(ch_stat("Campaigns", "Current clusters holding the account whose score reaches the "
                         f"cluster_extraction rule's threshold ({campaign_min_score():g}); a cluster below it "
                         "(linked accounts below the campaign threshold) shows in Cluster membership only "
                         "(clusters FINAL, active = 1).",
                         f"SELECT count() AS campaigns FROM clusters FINAL "
                         f"WHERE active = 1 AND has(account_ids, {ACCOUNT_SQL}) AND {is_campaign()}", COUNT))

    contributions = ch_timeseries(
        "Score and signal contributions",
        "Mean score per interval (line) and each signal's mean points (stacked): the score is their sum, capped "
        "at 100 (signatures_1m; docs/signals.md explains the signals).",
        [f"""
        SELECT $__timeInterval(window_start) AS time, signal, avg(point) AS points
        FROM signatures_1m
        ARRAY JOIN signal_names AS signal, signal_points AS point
        WHERE {THIS_ACCOUNT} AND {IN_RANGE}
        GROUP BY time, signal
        HAVING points > 0
        ORDER BY time
        """, f"""
        SELECT $__timeInterval(window_start) AS time, avg(score) AS score
        FROM {FRAMES}
        GROUP BY time
        ORDER BY time
        """], SCORE, w=24, h=9, stacked=True, series_by="signal")
    # The score is a line over the stack, not one more layer of it.
    contributions.override_by_query("B", [
        DynamicConfigValue(id_val="custom.stacking", value={"group": "B", "mode": "none"}),
        DynamicConfigValue(id_val="custom.fillOpacity", value=0),
        DynamicConfigValue(id_val="custom.lineWidth", value=2),
        DynamicConfigValue(id_val="color", value={"fixedColor": "red", "mode": "fixed"}),
    ])
    d.with_panel(contributions)

    d.with_panel(ch_timeseries("Calls, tokens and reasoning share", "Calls/s and output tokens/s (completion + "
                               "reasoning) of the account, and the share of its calls eliciting reasoning "
                               "(signatures_1m).", f"""
        SELECT $__timeInterval(window_start) AS time,
               sum(calls) / $__interval_s AS `calls/s`,
               {OUTPUT_TOKENS_SUM} / $__interval_s AS `output tokens/s`,
               sum(reasoning_calls) / greatest(sum(calls), 1) AS `reasoning share`
        FROM {FRAMES}
        GROUP BY time
        ORDER BY time
    """, PER_SECOND, units={"calls/s": RATE, "reasoning share": SHARE}))
    d.with_panel(ch_timeseries("Prompt diversity", "Distinct prompts per call, near-duplicate share and distinct "
                               "topics per minute: template sweeps show high diversity with few topics "
                               "(signatures_1m).", f"""
        SELECT $__timeInterval(window_start) AS time,
               sum(distinct_prompts) / greatest(sum(calls), 1) AS `distinct prompts per call`,
               sum(near_dup_calls) / greatest(sum(calls), 1) AS `near-duplicate share`,
               avg(distinct_topics) AS `distinct topics per minute`
        FROM {FRAMES}
        GROUP BY time
        ORDER BY time
    """, SHARE, units={"distinct topics per minute": COUNT}))

    d.with_panel(_entity_table("Networks, ASNs and countries", "Source networks (/24, /48), ASNs, countries and "
                               "network types of the account's calls.", ("ip_net", "asn", "country", "network_type")))
    d.with_panel(_entity_table("User agents", "User agents of the account's calls.", ("user_agent",)))
    d.with_panel(_entity_table("API keys", "The account's API keys and their traffic.", ("api_key",)))
    d.with_panel(_entity_table("Prompt templates and payment", "Prompt templates (simhash) and payment fingerprints "
                               "of the account: shared ones are how fleets are linked.", ("template", "payment")))

    d.with_panel(ch_table("Alerts timeline", "The account's alerts in the range, newest first (alerts).", f"""
        SELECT fired_ts AS time, rule, severity, round(score, 1) AS alert_score,
               arrayStringConcat(signals, ', ') AS signals, window_start AS frame
        FROM alerts
        WHERE {THIS_ACCOUNT} AND $__timeFilter(fired_ts)
        ORDER BY fired_ts DESC
        LIMIT 200
    """, w=12, h=8, units={"alert_score": SCORE}))
    d.with_panel(ch_table("Cluster membership", "The other members of every current cluster holding this account, "
                          "with their scores and output tokens (completion + reasoning) in the range (clusters "
                          "FINAL, account_scores_1h); cluster_status says whether the cluster is a campaign or "
                          "linked accounts below the campaign threshold. Click a member or a cluster to follow it.",
                          cluster_members_sql(f"has(account_ids, {ACCOUNT_SQL})", exclude_account=ACCOUNT_SQL),
                          w=12, h=8, accounts=["account_id"], clusters=["cluster_id"],
                          units={"max_score": SCORE, "output_tokens": COUNT}))
    return finish(d)
