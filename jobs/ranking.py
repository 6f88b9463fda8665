"""How accounts are counted and ranked wherever an operator reads a list of them.

The report (jobs/report) and the Grafana overview (jobs/grafana) build their "top accounts" from
here, so an equal peak is broken the same way in both; docs/cookbook.md writes the query out for
analysts, and tests/docs/test_cookbook.py checks that its order and limit are these.
"""

from __future__ import annotations

# "Output tokens" are what an account received: completion plus reasoning tokens. The event contract
# counts them apart (issue 15).
OUTPUT_TOKENS = "completion_tokens + reasoning_tokens"
OUTPUT_TOKENS_SUM = f"sum({OUTPUT_TOKENS})"

TOP_ACCOUNTS = 25
# Highest peak first; among equal peaks (many attackers sit at 100) the one that took the most output,
# then the account id so a page is the same on every read.
TOP_ACCOUNTS_ORDER = "peak_score DESC, output_tokens DESC, account_id"


def top_accounts_cte(table: str, hours: str, columns: str = "") -> str:
    """SQL: ``top AS (...)``, the TOP_ACCOUNTS accounts of the hourly rollup ``table`` in ``hours``.

    Each row has account_id, peak_score, call_count, output_tokens and the extra ``columns``
    (``expr AS name`` items, comma-separated). The aliases differ from the rollup's columns:
    ClickHouse would resolve a later ``sum(calls)`` to an alias named ``calls``.
    """
    extra = f",\n               {columns}" if columns else ""
    return f"""top AS (
        SELECT account_id, max(max_score) AS peak_score, sum(calls) AS call_count,
               {OUTPUT_TOKENS_SUM} AS output_tokens{extra}
        FROM {table}
        WHERE {hours}
        GROUP BY account_id
        ORDER BY {TOP_ACCOUNTS_ORDER}
        LIMIT {TOP_ACCOUNTS}
    )"""
