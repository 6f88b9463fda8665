"""The report's figures as PNG bytes (matplotlib, no pyplot state): traffic, scores, alerts over time.

Each function takes rows from ``jobs.report.data``, the bucket width and the report's time
range [start, end), and returns None when there is nothing to draw, so the page says "no
data" instead of showing empty axes.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from matplotlib import dates as mdates
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from jobs.html_page import figure_to_png

WIDTH_IN = 11.0
HEIGHT_IN = 3.4
BAND_WIDTH = 10  # scores_1m score bands: 0, 10, ..., 90 (90 holds 90-100)
# Fixed colours per position so the same rule keeps its colour between plots.
PALETTE = ("#b4232a", "#2c6fbb", "#e08a1e", "#3b8f4f", "#7a4fb0", "#6b6b6b", "#c2458f", "#1d9a9a")


def _time_axis(ax: Any, start: datetime, end: datetime) -> None:
    # Every plot spans the report's whole range, so their time axes line up on the page.
    ax.set_xlim(mdates.date2num(start), mdates.date2num(end))
    locator = mdates.AutoDateLocator(minticks=4, maxticks=10)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_xlabel("event time (UTC)")


def _figure() -> Figure:
    return Figure(figsize=(WIDTH_IN, HEIGHT_IN), layout="constrained")


def traffic(rows: list[dict[str, Any]], bucket_minutes: int, start: datetime, end: datetime) -> bytes | None:
    """Calls and output tokens (completion + reasoning) per minute, averaged over each bucket."""
    if not rows:
        return None
    t = [r["bucket"] for r in rows]
    calls = np.array([int(r["calls"]) for r in rows], float) / bucket_minutes
    completion = np.array([int(r["output_tokens"]) for r in rows], float) / bucket_minutes
    reasoning = np.array([int(r["reasoning_tokens"]) for r in rows], float) / bucket_minutes
    fig = _figure()
    ax_calls, ax_tokens = fig.subplots(1, 2)
    ax_calls.plot(t, calls, color=PALETTE[1], lw=1.6)
    ax_calls.fill_between(t, calls, color=PALETTE[1], alpha=0.15)
    ax_calls.set_title("calls per minute")
    ax_tokens.stackplot(t, completion, reasoning, labels=("completion", "reasoning"),
                        colors=(PALETTE[2], PALETTE[4]), alpha=0.8)
    ax_tokens.set_title("output tokens per minute")
    ax_tokens.legend(loc="upper left", ncols=2, fontsize=8, frameon=False)
    for ax, top in ((ax_calls, calls.max()), (ax_tokens, (completion + reasoning).max())):
        _time_axis(ax, start, end)
        ax.set_ylim(0, max(top, 1.0) * 1.2)  # headroom: the legend sits above the curves
        ax.yaxis.set_major_formatter(_compact)
    return figure_to_png(fig)


def scores(rows: list[dict[str, Any]], bucket_minutes: int, start: datetime, end: datetime) -> bytes | None:
    """Heatmap: account-minutes per score band (rows) and time bucket (columns), log colour scale."""
    counts: dict[datetime, dict[int, int]] = defaultdict(dict)
    for r in rows:
        counts[r["bucket"]][int(r["score_band"])] = int(r["frames"])
    if not counts:
        return None
    buckets = sorted(counts)
    bands = list(range(0, 100, BAND_WIDTH))
    grid = np.array([[counts[b].get(band, 0) for b in buckets] for band in bands], float)
    grid[grid == 0] = np.nan  # empty cells stay white instead of the lowest colour
    edges = [*buckets, buckets[-1] + timedelta(minutes=bucket_minutes)]
    fig = _figure()
    ax = fig.subplots()
    vmax = max(float(np.nanmax(grid)), 2.0)
    mesh = ax.pcolormesh(mdates.date2num(edges), [*bands, 100], grid, cmap="magma_r",
                         norm=LogNorm(vmin=1, vmax=vmax), shading="flat")
    ax.xaxis_date()
    _time_axis(ax, start, end)
    ax.set_ylabel("score")
    ax.set_yticks(range(0, 101, 20))
    ax.set_title(f"score distribution: account-minutes per score band, {bucket_minutes}-minute buckets")
    fig.colorbar(mesh, ax=ax, label="account-minutes", pad=0.01)
    return figure_to_png(fig)


def alerts(rows: list[dict[str, Any]], bucket_minutes: int, start: datetime, end: datetime) -> bytes | None:
    """Stacked bars: alerts per bucket, one colour per rule."""
    if not rows:
        return None
    rules = sorted({r["rule"] for r in rows})
    buckets = sorted({r["bucket"] for r in rows})
    index = {b: i for i, b in enumerate(buckets)}
    counts = np.zeros((len(rules), len(buckets)))
    for r in rows:
        counts[rules.index(r["rule"]), index[r["bucket"]]] += int(r["alerts"])
    fig = _figure()
    ax = fig.subplots()
    x = mdates.date2num(buckets)
    width = bucket_minutes / (24 * 60) * 0.85  # days, as date2num counts
    bottom = np.zeros(len(buckets))
    for i, rule in enumerate(rules):
        ax.bar(x, counts[i], width=width, bottom=bottom, align="edge", label=rule,
               color=PALETTE[i % len(PALETTE)])
        bottom += counts[i]
    ax.xaxis_date()
    _time_axis(ax, start, end)
    ax.set_ylabel("alerts")
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_title(f"alerts by rule, {bucket_minutes}-minute buckets")
    ax.legend(loc="upper right", fontsize=8, frameon=False)
    return figure_to_png(fig)


def _compact_label(value: float, _pos: int) -> str:
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= limit:
            return f"{value / limit:g}{suffix}"
    return f"{value:g}"


_compact = FuncFormatter(_compact_label)
