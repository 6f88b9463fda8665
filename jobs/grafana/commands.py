"""``distillwatch grafana build|deploy`` (registered in jobs/cli.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from jobs.grafana.build import FOLDER, INFRA


@click.group("grafana")
def grafana() -> None:
    """Grafana dashboards as code: build the JSON and provisioning files, deploy them to a server."""


@grafana.command("build")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), default=INFRA, show_default=True,
              help="write dashboards/ and provisioning/ under this directory")
@click.option("--check", is_flag=True, help="write nothing; exit 1 when a generated file is missing or stale")
def build_command(out: Path, check: bool) -> None:
    """Render the four dashboards and the provisioning files (deterministic; the output is checked in)."""
    from jobs.grafana.build import rendered, stale, write

    if check:
        files = rendered()
        outdated = stale(out, files)
        for path in outdated:
            click.echo(f"stale: {path}", err=True)
        if outdated:
            click.echo("run `distillwatch grafana build`", err=True)
            sys.exit(1)
        click.echo(f"dashboards are up to date ({len(files)} files)")
        return
    changed = write(out)
    for path in changed:
        click.echo(f"wrote {path}", err=True)
    click.echo(f"{len(changed)} file(s) changed under {out}", err=True)


@grafana.command("deploy")
@click.option("--url", required=True, help="Grafana base URL, e.g. https://grafana.example.com")
@click.option("--dry-run", is_flag=True, help="print what would change (new / changed / unchanged), change nothing")
@click.option("--folder", default=FOLDER, show_default=True, help="folder uid and title for the dashboards")
@click.option("--no-datasources", is_flag=True,
              help="leave the datasources alone (otherwise they are built from CLICKHOUSE_* and PROMETHEUS_URL)")
@click.option("--timeout", default=10.0, show_default=True, help="seconds per request")
def deploy_command(url: str, dry_run: bool, folder: str, no_datasources: bool, timeout: float) -> None:
    """Create or update the datasources, the folder and the dashboards (token from GRAFANA_TOKEN)."""
    from jobs.grafana.deploy import TOKEN_ENV, DeployError, connect, deploy, plan

    token = os.environ.get(TOKEN_ENV, "")
    if not token:
        raise click.ClickException(f"set {TOKEN_ENV} to a Grafana service-account token (Editor or Admin role)")
    try:
        api = connect(url, token, timeout)
        steps = plan(api, folder=folder, with_datasources=not no_datasources)
        for step in steps:
            click.echo(step.describe())
        if dry_run:
            click.echo("dry run: nothing changed", err=True)
            return
        applied = deploy(api, steps)
    except DeployError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{len(applied)} object(s) created or updated, {len(steps) - len(applied)} unchanged", err=True)
