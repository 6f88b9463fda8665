"""jobs.html_page: escaping, tables, embedded figures, a page that links to nothing outside itself."""

from __future__ import annotations

import base64
import re
from datetime import datetime

import pytest
from matplotlib.figure import Figure

from jobs.html_page import Html, esc, figure_png, figure_to_png, format_value, key_values, page, section, table, tags

HOSTILE = "<img src=x onerror=alert(1)>&\"'"


def test_values_are_escaped_unless_marked_html() -> None:
    assert esc(HOSTILE) == "&lt;img src=x onerror=alert(1)&gt;&amp;&quot;&#x27;"
    assert esc(Html("<b>ok</b>")) == "<b>ok</b>"
    markup = table(["account", "signals"], [(HOSTILE, tags([HOSTILE, "output_harvest"]))])
    assert "<img" not in markup and "&lt;img src=x" in markup
    assert '<span class="tag">output_harvest</span>' in markup
    assert "<img" not in key_values([(HOSTILE, HOSTILE)])
    assert "<img" not in section(HOSTILE, "", anchor=HOSTILE, note=HOSTILE)


def test_cell_values_read_well() -> None:
    assert format_value(1234567) == "1,234,567"
    assert format_value(83.64) == "83.6"
    assert format_value(float("nan")) == ""
    assert format_value(datetime(2026, 12, 3, 9, 20)) == "2026-12-03 09:20:00"
    assert format_value(["a", 2]) == "a, 2"
    assert format_value(None) == ""
    assert format_value(True) == "yes"


def test_table_classes_and_errors() -> None:
    markup = table(["a", "n", "id", "text"], [("x", 5, "org-1", "long words")], numeric=[1], mono=[2], wrap=[3])
    assert '<th class="num">n</th>' in markup
    assert '<td class="num">5</td>' in markup and '<td class="mono">org-1</td>' in markup
    assert '<td class="wrap">long words</td>' in markup
    assert table(["a"], [], empty="nothing here") == '<p class="empty">nothing here</p>'
    with pytest.raises(ValueError, match="row 1 has 1 cells, expected 2"):
        table(["a", "b"], [(1, 2), (3,)])


def test_figure_is_embedded_as_png_data() -> None:
    fig = Figure(figsize=(2, 1))
    fig.subplots().plot([0, 1], [1, 0])
    png = figure_to_png(fig)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    markup = figure_png(png, alt="a <line>", caption="cap")
    data = re.search(r'src="data:image/png;base64,([^"]+)"', markup)
    assert data and base64.b64decode(data.group(1)) == png
    assert 'alt="a &lt;line&gt;"' in markup and "<figcaption>cap</figcaption>" in markup


def test_page_links_to_nothing_outside_itself() -> None:
    html = page("title <x>", [("one", "First", section("First", "<p>body</p>", anchor="one"))],
                subtitle="sub", footer="made by https://example.invalid text only")
    assert html.startswith("<!DOCTYPE html>") and "<title>title &lt;x&gt;</title>" in html
    assert '<a href="#one">First</a>' in html and '<section id="one">' in html
    attributes = re.findall(r'(?:src|href)="([^"]*)"', html)
    assert attributes and all(a.startswith(("#", "data:")) for a in attributes)
    assert "<link" not in html and "<script" not in html and "@import" not in html
