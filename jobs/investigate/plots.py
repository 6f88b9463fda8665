"""The figures of the ``investigate`` HTML page (matplotlib, Agg backend, returned as PNG bytes)."""

from __future__ import annotations

from datetime import datetime
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
        width = 1 / 24 * 0.9
        hours = _num([b.start for b in page.hours])
        tokens.bar(hours, [b.completion_tokens for b in page.hours], width=width,
                   align="edge", color="#9ecae1", label="completion tokens / hour")
        tokens.bar(hours, [b.reasoning_tokens for b in page.hours], width=width,
                   align="edge", bottom=[b.completion_tokens for b in page.hours], color="#c6dbef",
                   label="reasoning tokens / hour")
        tokens.set_ylabel("output tokens per hour")
        ax.set_zorder(tokens.get_zorder() + 1)
        ax.patch.set_visible(False)
        tokens.legend(loc="upper right", fontsize=8)
    if page.scores:
        ax.plot(_num([s.start for s in page.scores]), [s.max_score for s in page.scores], color="#1d2329", lw=1.4,
                marker="." if len(page.scores) < 60 else None, label="max score")
    for i, alert in enumerate(page.alerts):
        ax.axvline(float(mdates.date2num(alert.minute)), color=_ALERT, lw=1, ls="--", label="alert" if i == 0 else None)
    ax.set_ylim(0, 100)
    ax.set_ylabel("extraction score")
    ax.legend(loc="upper left", fontsize=8)
    _time_axis(ax)
    ax.set_title(f"{page.account_id}: score, alerts and output received", fontsize=10)
    return figure_to_png(fig)


def cluster_history(cluster: ClusterInfo) -> bytes:
    """The cluster's score over its stored versions (event time of their evidence)."""
    fig, ax = plt.subplots(figsize=(10.5, 2.6))
    points = sorted(cluster.history, key=lambda h: (h.updated_ts, h.version))
    ax.step(_num([h.updated_ts for h in points]), [h.score for h in points], where="post", color="#1d2329", marker="o")
    ax.set_ylim(0, 100)
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


def _num(times: list[datetime]) -> np.ndarray:
    return np.asarray(mdates.date2num(times), np.float64)  # matplotlib's date numbers


def _time_axis(ax: plt.Axes) -> None:
    locator = mdates.AutoDateLocator(minticks=4, maxticks=10)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.grid(axis="y", color="#e5e8eb", lw=0.6)
