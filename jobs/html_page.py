"""Self-contained HTML pages (``report``, ``investigate --html``): one file to attach to a ticket.

Everything a page needs is inside it: inline CSS, PNG figures as ``data:`` URIs, no
script, font or link to anything outside the file. Every value given to these
helpers is HTML-escaped unless it is wrapped in ``Html`` (markup built by this module
or by the caller from escaped parts), so account ids and user agents cannot inject
markup.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CSS = """
:root { --fg: #1d2329; --muted: #5b6670; --line: #d7dde3; --head: #eef2f5; --accent: #b4232a; }
* { box-sizing: border-box; }
body { font: 14px/1.45 -apple-system, "Segoe UI", "DejaVu Sans", Helvetica, Arial, sans-serif;
       color: var(--fg); margin: 0; background: #fff; }
main { max-width: 1200px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 32px 0 8px; padding-bottom: 4px; border-bottom: 2px solid var(--line); }
h3 { font-size: 15px; margin: 20px 0 6px; }
p.sub, p.note { color: var(--muted); margin: 4px 0 12px; }
nav { margin: 12px 0 8px; font-size: 13px; }
nav a { color: var(--fg); margin-right: 14px; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; font-size: 12.5px; margin: 6px 0 12px; }
th, td { border: 1px solid var(--line); padding: 3px 8px; text-align: left; vertical-align: top; white-space: nowrap; }
td.wrap { white-space: normal; min-width: 12em; }
td.wrap { overflow-wrap: anywhere; word-break: break-word; max-width: 48em; }
td.wrap .tag { white-space: normal; overflow-wrap: anywhere; }
@media print { .scroll { overflow: visible; } table { width: 100%; table-layout: auto; }
  th, td { white-space: normal; overflow-wrap: anywhere; } main { max-width: none; padding: 0; } }
th { background: var(--head); font-weight: 600; white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.mono { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12px; }
tr:nth-child(even) td { background: #fafbfc; }
dl.kv { display: grid; grid-template-columns: max-content auto; gap: 3px 18px; margin: 8px 0 12px; }
dl.kv dt { color: var(--muted); }
dl.kv dd { margin: 0; font-variant-numeric: tabular-nums; }
figure { margin: 10px 0 18px; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: 12.5px; margin-top: 2px; }
.tag { display: inline-block; background: var(--head); border-radius: 3px; padding: 0 5px; margin: 1px 2px 1px 0;
       font-size: 11.5px; white-space: nowrap; }
.empty { color: var(--muted); font-style: italic; }
footer { color: var(--muted); font-size: 12px; margin-top: 36px; border-top: 1px solid var(--line); padding-top: 8px; }
"""


class Html(str):
    """Markup that is already safe: inserted as is (everything else is escaped)."""


def esc(value: Any) -> Html:
    """``value`` as escaped text (Html passes through); numbers, times and lists formatted for reading."""
    if isinstance(value, Html):
        return value
    return Html(html.escape(format_value(value), quote=True))


def format_value(value: Any) -> str:
    """Plain-text form of a cell value: thousands separators, one decimal, ISO times in UTC, lists joined."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:,.1f}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return ", ".join(format_value(v) for v in value)
    return str(value)


def tags(values: Iterable[Any]) -> Html:
    """Short labels (signals, shared features) as escaped inline tags."""
    return Html("".join(f'<span class="tag">{esc(v)}</span>' for v in values))


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], *, numeric: Iterable[int] = (),
          mono: Iterable[int] = (), wrap: Iterable[int] = (), empty: str = "none") -> Html:
    """A table with escaped cells, kept on one line each except in the ``wrap`` columns.

    ``numeric`` columns are right-aligned, ``mono`` ones in a fixed-width font; a table
    wider than the page scrolls sideways. ``empty`` is shown instead of a table without rows.

    Raises ValueError naming the row when a row's width differs from the headers'.
    """
    classes = {j: "num" for j in numeric} | {j: "mono" for j in mono} | {j: "wrap" for j in wrap}
    body = []
    for i, row in enumerate(rows):
        if len(row) != len(headers):
            raise ValueError(f"table row {i} has {len(row)} cells, expected {len(headers)} ({', '.join(headers)})")
        cells = "".join(f'<td class="{classes[j]}">{esc(v)}</td>' if j in classes else f"<td>{esc(v)}</td>"
                        for j, v in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    if not body:
        return Html(f'<p class="empty">{esc(empty)}</p>')
    head = "".join(f'<th class="num">{esc(h)}</th>' if classes.get(j) == "num" else f"<th>{esc(h)}</th>"
                   for j, h in enumerate(headers))
    return Html(f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}'
                "</tbody></table></div>")


def key_values(pairs: Iterable[tuple[str, Any]]) -> Html:
    """A two-column list of labelled figures (totals)."""
    items = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in pairs)
    return Html(f'<dl class="kv">{items}</dl>')


def figure_png(png: bytes, *, alt: str, caption: str = "") -> Html:
    """A PNG embedded as a base64 ``data:`` URI, with alt text and an optional caption."""
    data = base64.b64encode(png).decode("ascii")
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return Html(f'<figure><img alt="{esc(alt)}" src="data:image/png;base64,{data}">{cap}</figure>')


def figure_to_png(fig: Figure, *, dpi: int = 100) -> bytes:
    """Render a matplotlib figure to PNG bytes; a pyplot figure is closed (pyplot keeps it alive otherwise)."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    finally:
        if fig.canvas.manager is not None:  # made by pyplot; a plain Figure() has none
            import matplotlib.pyplot as plt

            plt.close(fig)
    return buf.getvalue()


def section(title: str, body: str, *, anchor: str, note: str = "") -> Html:
    """An ``<h2>`` section with an id for the page's navigation and an optional muted note."""
    lead = f'<p class="note">{esc(note)}</p>' if note else ""
    return Html(f'<section id="{esc(anchor)}"><h2>{esc(title)}</h2>{lead}{body}</section>')


def page(title: str, sections: Sequence[tuple[str, str, str]], *, subtitle: str = "", footer: str = "") -> str:
    """The whole document: ``sections`` are (anchor, title, section html), listed in a navigation bar."""
    nav = "".join(f'<a href="#{esc(anchor)}">{esc(name)}</a>' for anchor, name, _ in sections)
    body = "".join(markup for _, _, markup in sections)
    sub = f'<p class="sub">{esc(subtitle)}</p>' if subtitle else ""
    foot = f"<footer>{esc(footer)}</footer>" if footer else ""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{CSS}</style></head>"
            f"<body><main><h1>{esc(title)}</h1>{sub}<nav>{nav}</nav>{body}{foot}</main></body></html>\n")
