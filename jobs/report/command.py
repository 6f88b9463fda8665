"""The ``distillwatch report`` command: options, connection, write the page."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from jobs.ch_options import clickhouse_options, data_source, open_clickhouse


def _time_option(_ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    from jobs.report import parse_time

    if value is None:
        return None
    try:
        return parse_time(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=f"--{param.name}") from None


@click.command()
@clickhouse_options
@click.option("--out", type=click.Path(path_type=Path, dir_okay=False), default=Path("report.html"),
              show_default=True, help="the HTML file to write")
@click.option("--since", callback=_time_option, help="event-time start: ISO time (UTC) or a duration before now "
                                                     "(24h, 7d); default: the oldest data")
@click.option("--until", callback=_time_option, help="event-time end (exclusive), same forms; default: the newest")
def report(clickhouse: str | None, data_dir: Path | None, out: Path, since: datetime | None,
           until: datetime | None) -> None:
    """Write one self-contained HTML page: plots, top accounts, campaigns, alerts, pipeline totals.

    For a team without Grafana, or to attach to a ticket: styles and figures are inside
    the file, which links to nothing. Reads the rollup tables (see docs/cookbook.md).
    """
    from jobs.investigate.campaign_rule import campaign_threshold
    from jobs.report.data import Window, load
    from jobs.report.render import render
    from pipeline.alerting.rules import RulesError
    from pipeline.sinks.clickhouse import ClickHouseError

    if since and until and since >= until:
        raise click.BadParameter(f"--since ({since}) must be before --until ({until})", param_hint="--since")
    client, settings = open_clickhouse(clickhouse, data_dir)
    window = Window(since, until)
    try:
        data = load(client, settings.clickhouse_database, window,
                    campaign_threshold=campaign_threshold(settings.alert_rules))
        if data.empty:  # a wrong --data-dir or database, or a window outside the data: say so, write nothing
            period = (f" from {since or 'the start'} until {until or 'the end'}" if since or until else "")
            raise click.ClickException(f"no data in {data_source(settings)} (database "
                                       f"{settings.clickhouse_database}){period}: no api_calls or signatures; "
                                       "check --data-dir/--clickhouse and --since/--until")
        page = render(data)
        out.write_text(page, encoding="utf-8")
    except (ClickHouseError, RulesError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"wrote {out} ({len(page) / 1024:,.0f} KiB)", err=True)
