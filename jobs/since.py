"""``--since`` windows of the on-call commands (``alerts list``, ``backtest``): ``90s``, ``30m``, ``24h``, ``7d``."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import click

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
ALL = "all"


def parse_since(text: str) -> int | None:
    """Seconds in ``text`` (a number and one of s, m, h, d, w), or None for ``all`` (no lower bound).

    Raises ValueError naming the text when it is neither.
    """
    if text.strip().lower() == ALL:
        return None
    match = _SINCE.match(text.lower())
    if not match or float(match.group(1)) <= 0:
        raise ValueError(f"expected a positive duration such as 30m, 24h or 7d (or 'all'), got {text!r}")
    return round(float(match.group(1)) * _UNITS[match.group(2)])


def parse_moment(text: str, *, now: datetime | None = None) -> datetime | None:
    """A point in time: a duration back from ``now`` (30m, 24h, 7d), an ISO date/time (UTC unless it has an
    offset), or None for ``all``. Returns an aware UTC datetime; raises ValueError naming the text."""
    try:
        seconds = parse_since(text)
    except ValueError:
        try:
            when = datetime.fromisoformat(text.strip())
        except ValueError:
            raise ValueError(f"expected a duration such as 24h or 7d, 'all', or an ISO time such as "
                             f"2026-12-03T09:00, got {text!r}") from None
        return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    return None if seconds is None else (now or datetime.now(UTC)) - timedelta(seconds=seconds)


def check_since_option(_ctx: click.Context, param: click.Parameter, value: str) -> str:
    """Click callback: refuse a ``--since`` that ``parse_since`` cannot read, naming the option."""
    try:
        parse_since(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=f"--{param.name}") from None
    return value
