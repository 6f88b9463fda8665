"""``--since`` windows of the on-call commands (``alerts list``, ``backtest``): ``90s``, ``30m``, ``24h``, ``7d``."""

from __future__ import annotations

import re

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
