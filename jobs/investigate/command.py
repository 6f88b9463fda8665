"""The ``investigate`` command's work once options are parsed: read, then print and write the outputs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from clickhouse_connect.driver.client import Client

from jobs.investigate.collect import investigate
from jobs.investigate.result import Investigation
from jobs.since import parse_moment
from pipeline.linking.config import LinkingConfig


@dataclass(frozen=True)
class Outputs:
    as_json: bool = False
    html: Path | None = None
    stix: Path | None = None
    include_accounts: bool = False
    text: bool = False  # print the text page even when a file or JSON was asked for

    @property
    def print_text(self) -> bool:
        """The text page goes to stdout when nothing else was asked for, or with --text."""
        return self.text or not (self.as_json or self.html or self.stix)


def parse_period(text: str | None, now: datetime | None = None) -> datetime | None:
    """``--since``: a duration back from now (30m, 24h, 7d), ``all``, or an ISO date/time (UTC if naive).

    Raises ValueError naming the text when it is none of these.
    """
    if text is None:
        return None
    try:
        return parse_moment(text, now=now)
    except ValueError as exc:
        raise ValueError(f"--since: {exc}") from None


def run(client: Client, database: str, target: str, since: datetime | None, outputs: Outputs,
        linking: LinkingConfig | None = None, *, rules_path: Path | None = None,
        where: str = "") -> tuple[str, list[Path]]:
    """Investigate ``target`` and write the files asked for; returns what to print on stdout ('' for
    nothing: JSON with --json, the text page when no file was asked for or with --text) and the files written.

    ``linking``: the worker's linking file (weights, caps), default the packaged one; ``rules_path``:
    the alert rules (campaign threshold); ``where``: the data dir or DSN, for errors.
    Raises InvestigateError for a target that is neither an account nor a cluster.
    """
    inv = investigate(client, database, target, since=since, linking=linking, rules_path=rules_path, where=where)
    wrote: list[Path] = []
    if outputs.stix:
        from jobs.investigate.stix import build_bundle, bundle_json

        outputs.stix.write_text(bundle_json(build_bundle(inv, include_accounts=outputs.include_accounts,
                                                         linking=linking)))
        wrote.append(outputs.stix)
    if outputs.html:
        from jobs.investigate.render_html import render as render_html

        outputs.html.write_text(render_html(inv))
        wrote.append(outputs.html)
    printed = [json.dumps(inv.to_dict())] if outputs.as_json else []
    if outputs.print_text:
        printed.append(_text(inv))
    return "\n".join(printed), wrote


def _text(inv: Investigation) -> str:
    from jobs.investigate.render_text import render

    return render(inv)
