"""``distillwatch report``: the page on a real demo run, its escaping, its options, and Chromium's view of it."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from PIL import Image

from jobs.cli import main
from jobs.investigate.campaign_rule import campaign_threshold
from jobs.report import Window, build_report, parse_time
from jobs.report.data import MAX_BUCKETS, ReportData, bucket_minutes, load
from jobs.report.render import SECTIONS, plot_range, render
from pipeline.settings import Settings
from tests.support.demo_data import DemoData

HOSTILE = "<script>alert('x')</script>&\""
_IMG = re.compile(r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)">')


def _images(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in _IMG.findall(html)]


def _no_external_urls(html: str) -> None:
    attributes = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', html)
    assert all(a.startswith(("#", "data:")) for a in attributes), [a[:60] for a in attributes if a[:1] != "#"]
    assert not re.search(r"url\(|@import|<link|<script|<iframe", html)


def _data(**changes: object) -> ReportData:
    minute = datetime(2026, 12, 3, 9, 20)
    base = ReportData(
        database="dw", window=Window(), first_minute=minute, last_minute=minute + timedelta(minutes=2),
        bucket_minutes=1,
        totals={"events": 30, "rejected": 1, "accounts": 1, "account_minutes": 3, "input_tokens": 10,
                "output_tokens": 20, "reasoning_tokens": 5, "error_calls": 0, "alerts": 1, "alerted_accounts": 1,
                "campaigns": 1, "linked_groups": 0},
        rejects=[{"reason": "invalid_json", "field": "", "events": 1, "example": HOSTILE}],
        models=[{"model": "m", "calls": 30, "output_tokens": 20, "reasoning_tokens": 5, "accounts": 1}],
        traffic=[{"bucket": minute + timedelta(minutes=i), "calls": 10, "output_tokens": 7, "reasoning_tokens": 2,
                  "accounts": 1} for i in range(3)],
        scores=[{"bucket": minute + timedelta(minutes=i), "score_band": 10 * i, "frames": 1} for i in range(3)],
        alerts_series=[{"bucket": minute, "rule": "extraction_score_high", "alerts": 1}],
        top_accounts=[{"account_id": HOSTILE, "peak_score": 80.0, "calls": 30, "output_tokens": 25,
                       "active_minutes": 3, "first_minute": minute, "signals": [HOSTILE], "alerts": 1,
                       "first_alert": minute, "cluster_id": HOSTILE}],
        campaigns=[{"cluster_id": HOSTILE, "size": 1, "score": 70.0, "shared_features": [HOSTILE],
                    "account_ids": [HOSTILE], "first_seen": minute, "updated": minute, "output_tokens": 25,
                    "output_before_alert": 10, "first_alert": minute, "calls": 30}],
        alerts=[{"fired_ts": minute, "window_start": minute - timedelta(minutes=1), "account_id": HOSTILE,
                 "rule": "extraction_score_high", "severity": "warning", "score": 80.0, "mode": "page",
                 "suppressed_by": HOSTILE, "signals": [HOSTILE]}],
        alerts_total=1, campaign_threshold=60.0,
    )
    return ReportData(**{**base.__dict__, **changes})


def test_account_ids_and_every_other_value_are_escaped() -> None:
    html = render(_data())
    assert "<script" not in html
    # account, signals, campaign (three places), alert, reject example: all escaped
    assert html.count("&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&amp;&quot;") >= 7
    assert all(f'<section id="{s}">' in html for s in SECTIONS)
    assert len(_images(html)) == 3
    _no_external_urls(html)


def test_empty_window_says_so_instead_of_drawing_empty_plots() -> None:
    html = render(_data(first_minute=None, last_minute=None, traffic=[], scores=[], alerts_series=[],
                        top_accounts=[], campaigns=[], alerts=[], rejects=[], models=[], alerts_total=0))
    assert all(f'<section id="{s}">' in html for s in SECTIONS)
    assert not _images(html)
    for text in ("nothing to plot", "no scored accounts", "no active campaign", "no alerts in the window",
                 "no input rejected", "no traffic in the window"):
        assert text in html


def test_bucket_width_keeps_series_short() -> None:
    start = datetime(2026, 1, 1)
    assert bucket_minutes(None, None) == 1
    assert bucket_minutes(start, start + timedelta(minutes=20)) == 1
    assert bucket_minutes(start, start + timedelta(hours=24)) == 10
    for span in (timedelta(hours=5), timedelta(days=3), timedelta(days=40)):
        step = bucket_minutes(start, start + span)
        assert (span / timedelta(minutes=step)) <= MAX_BUCKETS or step == 1440


def test_parse_time() -> None:
    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    assert parse_time("2026-12-03T09:00", now=now) == datetime(2026, 12, 3, 9, 0)
    assert parse_time("2026-12-03 10:00+01:00", now=now) == datetime(2026, 12, 3, 9, 0)
    assert parse_time("24h", now=now) == datetime(2026, 12, 2, 12, 0)
    assert parse_time("90m", now=now) == datetime(2026, 12, 3, 10, 30)
    for bad in ("yesterday", "all", "-3h", ""):
        with pytest.raises(ValueError, match="ISO time"):
            parse_time(bad, now=now)


def test_bad_options_are_refused_before_connecting() -> None:
    runner = CliRunner()
    bad = runner.invoke(main, ["report", "--since", "last tuesday"])
    assert bad.exit_code == 2 and "--since" in bad.output and "last tuesday" in bad.output
    reversed_ = runner.invoke(main, ["report", "--since", "2026-12-03T10:00", "--until", "2026-12-03T09:00"])
    assert reversed_.exit_code == 2 and "must be before" in reversed_.output


@pytest.mark.clickhouse
@pytest.mark.slow
class TestOnDemoRun:
    @pytest.fixture(scope="class")
    def html(self, demo_db: DemoData) -> str:
        return build_report(demo_db.client, demo_db.database, Window())

    def test_every_section_with_embedded_plots_and_no_external_url(self, html: str) -> None:
        assert all(f'<section id="{s}">' in html for s in SECTIONS)
        images = _images(html)
        assert len(images) == 3  # traffic, score distribution, alerts by rule
        for png in images:
            assert png.startswith(b"\x89PNG") and len(png) > 10_000
        _no_external_urls(html)
        assert "no data in the window" not in html

    def test_totals_from_rollups_match_the_base_tables(self, demo_db: DemoData) -> None:
        db, client = demo_db.database, demo_db.client
        data = load(client, db, Window(), campaign_threshold=campaign_threshold())
        events, accounts = client.query(f"SELECT count(), uniqExact(account_id) FROM `{db}`.api_calls FINAL").first_row
        alerts = client.query(f"SELECT count() FROM `{db}`.alerts FINAL").first_row[0]
        rejected = client.query(f"SELECT count() FROM `{db}`.rejected_events").first_row[0]
        assert data.totals["events"] == events and data.totals["alerts"] == alerts > 0
        assert data.totals["rejected"] == rejected
        assert abs(data.totals["accounts"] - accounts) <= max(2, accounts // 50)  # uniq is approximate
        assert data.totals["campaigns"] == sum(data.is_campaign(c) for c in data.campaigns) > 0
        assert data.totals["campaigns"] + data.totals["linked_groups"] == len(data.campaigns)
        alerted = [c for c in data.campaigns if c["first_alert"] is not None]
        assert alerted and all(0 < c["output_before_alert"] < c["output_tokens"] for c in alerted)
        assert all(c["output_before_alert"] == c["output_tokens"] for c in data.campaigns if c["first_alert"] is None)

    def test_top_accounts_are_the_alerted_attackers_with_their_signals(self, html: str, demo_db: DemoData) -> None:
        data = load(demo_db.client, demo_db.database, Window())
        top = data.top_accounts
        assert top and [r["peak_score"] for r in top] == sorted((r["peak_score"] for r in top), reverse=True)
        attackers = set(demo_db.attackers())
        assert top[0]["account_id"] in attackers and top[0]["alerts"] > 0 and top[0]["signals"]
        for row in top[:5]:
            assert f'<td class="mono">{row["account_id"]}</td>' in html
            assert f'<span class="tag">{row["signals"][0]}</span>' in html

    def test_window_narrows_everything(self, demo_db: DemoData) -> None:
        whole = load(demo_db.client, demo_db.database, Window())
        assert whole.first_minute and whole.last_minute
        late = whole.last_minute - timedelta(minutes=5)
        part = load(demo_db.client, demo_db.database, Window(since=late))
        assert part.first_minute == late and 0 < part.totals["events"] < whole.totals["events"]
        assert all(r["fired_ts"] >= late for r in part.alerts)
        nothing = load(demo_db.client, demo_db.database, Window(until=whole.first_minute))
        assert nothing.totals["events"] == 0 and not nothing.traffic and nothing.first_minute is None

    def test_command_writes_the_page(self, demo_db: DemoData, ch_settings: Settings, tmp_path: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
        # Same DSN as the session client, so connect() hands back that client (chDB: one directory per process).
        monkeypatch.setenv("DW_CLICKHOUSE_DATABASE", demo_db.database)
        before = demo_db.client.database
        out = tmp_path / "report.html"
        try:
            result = CliRunner().invoke(main, ["report", "--clickhouse", ch_settings.effective_clickhouse_dsn,
                                               "--out", str(out)])
        finally:
            demo_db.client.database = before  # connect() made the demo database the client's default
        assert result.exit_code == 0, result.output
        html = out.read_text()
        assert len(_images(html)) == 3 and demo_db.database in html

    def test_command_refuses_a_database_without_data(self, demo_db: DemoData, ch_settings: Settings,
                                                     ch_database: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("DW_CLICKHOUSE_DATABASE", ch_database)  # fresh: migrated by the command, empty
        before = demo_db.client.database
        out = tmp_path / "report.html"
        try:
            result = CliRunner().invoke(main, ["report", "--clickhouse", ch_settings.effective_clickhouse_dsn,
                                               "--out", str(out)])
        finally:
            demo_db.client.database = before
        assert result.exit_code == 1 and "no data in" in result.output and ch_database in result.output
        assert not out.exists()

    def test_alerts_plot_counts_every_alert(self, demo_db: DemoData) -> None:
        data = load(demo_db.client, demo_db.database, Window())
        start, end = plot_range(data)
        plotted = sum(int(r["alerts"]) for r in data.alerts_series if start <= r["bucket"] < end)
        assert plotted == data.totals["alerts"] > 0

    def test_chromium_renders_it(self, html: str, tmp_path: Path) -> None:
        chromium = shutil.which("chromium")
        if chromium is None:
            pytest.fail("chromium is not installed: `make test` installs Debian's chromium (make system-packages)")
        page, shot = tmp_path / "report.html", tmp_path / "report.png"
        page.write_text(html)
        done = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--no-first-run", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
             f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1280,3000",
             page.as_uri()],
            capture_output=True, text=True, timeout=240, check=False,
        )
        assert shot.exists(), f"chromium wrote no screenshot (status {done.returncode}):\n{done.stderr[-2000:]}"
        assert shot.stat().st_size > 100_000
        with Image.open(shot) as img:
            assert img.size == (1280, 3000)
            colours = img.convert("RGB").getcolors(maxcolors=1 << 16)
        # None: more than 65,536 colours. A blank or text-only page has a handful; the plots bring hundreds.
        assert colours is None or len(colours) > 200


def test_alerts_plot_range_holds_the_last_alert() -> None:
    # The last alert fires at the end of the last traffic minute: its bucket starts where traffic ends.
    data = _data(bucket_minutes=1, alerts_series=[{"bucket": datetime(2026, 12, 3, 10, 38), "rule": "r",
                                                   "alerts": 1}],
                 first_minute=datetime(2026, 12, 3, 10, 17), last_minute=datetime(2026, 12, 3, 10, 37))
    start, end = plot_range(data)
    assert start == datetime(2026, 12, 3, 10, 17) and end == datetime(2026, 12, 3, 10, 39)


def test_clusters_below_the_cluster_rule_are_linked_accounts_not_campaigns() -> None:
    clusters = [{"cluster_id": f"c-{i:08x}", "size": 2, "score": score, "account_ids": ["a", "b"],
                 "shared_features": [], "first_seen": None, "first_alert": None, "output_tokens": 1,
                 "output_before_alert": 1} for i, score in ((1, 94.0), (2, 30.0))]
    html = render(_data(campaigns=clusters, campaign_threshold=60.0))
    campaigns, linked = html.split("Linked accounts (below the campaign threshold)", 1)
    assert "c-00000001" in campaigns and "c-00000002" not in campaigns and "c-00000002" in linked
