"""The figures of the ``investigate`` HTML page (matplotlib, Agg backend, returned as PNG bytes)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Final

import matplotlib

matplotlib.use("Agg")  # no display: files only

import matplotlib.dates as mdates
import matplotlib.pyplot as plt
import numpy as np

from jobs.html_page import figure_to_png
from jobs.investigate.result import AccountPage, ClusterInfo, Investigation

_SIZE: Final = (10.5, 3.2)
_ALERT: Final = "#b4232a"


def account_activity(page: AccountPage) -> bytes:
    """Score per bucket (line), the minute of each alert (red lines), output tokens per hour (bars)."""
    fig, ax = plt.subplots(figsize=_SIZE)
    if page.hours:
        tokens = ax.twinx()
        width = 1 / 24 * 0.9  # days (matplotlib date units): each bar covers its hour, from the hour's start
        hours = _num([b.start.replace(minute=0, second=0, microsecond=0) for b in page.hours])
        tokens.bar(hours, [b.completion_tokens for b in page.hours], width=width,
                   align="edge", color="#9ecae1", label="completion tokens / hour")
        tokens.bar(hours, [b.reasoning_tokens for b in page.hours], width=width,
                   align="edge", bottom=[b.completion_tokens for b in page.hours], color="#c6dbef",
                   label="reasoning tokens / hour")
        tokens.set_ylabel("output tokens per hour")
        ax.set_zorder(tokens.get_zorder() + 1)
        ax.patch.set_visible(False)
        tokens.legend(loc="upper right", bbox_to_anchor=(1, -0.16), fontsize=8, ncol=2, frameon=False)
    if page.scores:
        ax.plot(_num([s.start for s in page.scores]), [s.max_score for s in page.scores], color="#1d2329", lw=1.4,
                marker="." if len(page.scores) < 60 else None, label="max score")
    for i, alert in enumerate(page.alerts):
        ax.axvline(float(mdates.date2num(alert.fired_ts)), color=_ALERT, lw=1, ls="--",
                   label="alert (fired at)" if i == 0 else None)
    span = _data_span(page)
    if span:
        ax.set_xlim(*span)  # the data's range: no empty hour drawn past the last call
    ax.set_ylim(0, 105)  # a score of 100 stays above the top border
    ax.set_ylabel("extraction score")
    ax.legend(loc="upper left", bbox_to_anchor=(0, -0.16), fontsize=8, ncol=2, frameon=False)  # below: no overlap
    _time_axis(ax)
    ax.set_title(f"{page.account_id}: score, alerts and output received", fontsize=10)
    return figure_to_png(fig)


def cluster_history(cluster: ClusterInfo) -> bytes:
    """The cluster's score over its stored versions (event time of their evidence)."""
    fig, ax = plt.subplots(figsize=(10.5, 2.6))
    points = sorted(cluster.history, key=lambda h: (h.updated_ts, h.version))
    xs = _num([h.updated_ts for h in points])
    ax.step(xs, [h.score for h in points], where="post", color="#1d2329", marker="o")
    if len(points) == 1 or xs[0] == xs[-1]:  # one stored version: an hour around it, not years of empty axis
        ax.set_xlim(xs[0] - 1 / 48, xs[0] + 1 / 48)
    ax.set_ylim(0, 105)
    ax.set_ylabel("cluster score")
    _time_axis(ax)
    ax.set_title(f"{cluster.cluster_id}: score per stored version", fontsize=10)
    return figure_to_png(fig)


def member_harvest(inv: Investigation) -> bytes:
    """Output tokens per member, split at each member's first alert."""
    pages = sorted(inv.pages, key=lambda p: -p.harvest.total)
    fig, ax = plt.subplots(figsize=(10.5, max(2.4, 0.28 * len(pages) + 1)))
    names = [p.account_id for p in pages]
    before = [p.harvest.before_alert for p in pages]
    after = [p.harvest.total - p.harvest.before_alert for p in pages]
    ax.barh(names, before, color=_ALERT, label="before its first alert")
    ax.barh(names, after, left=before, color="#9ecae1", label="after")
    ax.invert_yaxis()
    ax.set_xlabel("output tokens (completion + reasoning)")
    ax.legend(loc="lower right", fontsize=8)
    ax.tick_params(axis="y", labelsize=8)
    ax.set_title("harvested output per member", fontsize=10)
    return figure_to_png(fig)


def _data_span(page: AccountPage) -> tuple[float, float] | None:
    """From the first call (or score bucket, alert) to the last: an hour's bar is cut at both ends of the data."""
    starts = [t for t in (page.first_seen,) if t] + [s.start for s in page.scores[:1]] + [a.minute for a in page.alerts]
    ends = [t for t in (page.last_seen,) if t] + [a.fired_ts for a in page.alerts]
    if page.scores:
        ends.append(page.scores[-1].start + timedelta(seconds=page.score_bucket_s))
    if not starts or not ends:
        return None
    lo, hi = float(mdates.date2num(min(starts))), float(mdates.date2num(max(ends)))
    return (lo, hi) if hi > lo else None


def _num(times: list[datetime]) -> np.ndarray:
    return np.asarray(mdates.date2num(times), np.float64)  # matplotlib's date numbers


def _time_axis(ax: plt.Axes) -> None:
    locator = mdates.AutoDateLocator(minticks=4, maxticks=10)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.grid(axis="y", color="#e5e8eb", lw=0.6)
