"""``distillwatch report``: one self-contained HTML page for a team without Grafana, or for a ticket.

``data`` reads ClickHouse (rollups where they exist), ``plots`` draws the figures,
``render`` assembles the page with ``jobs.html_page``. ``build_report`` runs all three.
"""

from __future__ import annotations

from datetime import datetime

from clickhouse_connect.driver.client import Client

from jobs.report.data import ReportData, Window, load
from jobs.report.render import render
from jobs.since import parse_moment

__all__ = ["ReportData", "Window", "build_report", "parse_time"]


def build_report(client: Client, database: str, window: Window, *, generated: datetime | None = None,
                 campaign_threshold: float | None = None) -> str:
    """The HTML page for ``database`` over ``window``; raises ClickHouseError when a query fails.

    ``campaign_threshold``: see ``load`` (None: every cluster is listed as linked accounts).
    """
    return render(load(client, database, window, campaign_threshold=campaign_threshold), generated=generated)


def parse_time(text: str, *, now: datetime | None = None) -> datetime:
    """``--since``/``--until``: an ISO time (UTC unless it has an offset) or a duration before now (``24h``, ``7d``).

    Returns a naive UTC datetime (how ClickHouse binds DateTime); raises ValueError naming the text.
    """
    when = parse_moment(text, now=now)
    if when is None:
        raise ValueError(f"expected an ISO time such as 2026-12-03T09:00 or a duration such as 24h or 7d, "
                         f"got {text!r}")
    return when.replace(tzinfo=None)
