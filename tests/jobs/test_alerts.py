"""``distillwatch alerts``: list with feedback, record verdicts, refuse bad input (in-process, session chDB)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner, Result
from clickhouse_connect.driver.client import Client

from jobs.cli import main
from pipeline.alerting.feedback import FeedbackSuppressions, load_feedback
from pipeline.settings import Settings
from pipeline.sinks.clickhouse import ClickHouseWriter
from schemas.migrate import apply_migrations
from schemas.tables import ALERTS, SIGNATURES_1M, TableSpec

pytestmark = pytest.mark.clickhouse

NOW_MS = int(time.time() * 1000)
HOUR = 3_600_000


def _blank(ch_type: str) -> Any:
    if ch_type.startswith("Array"):
        return []
    if "String" in ch_type:
        return ""
    if ch_type.startswith("Float"):
        return 0.0
    return 0  # integers and DateTime (epoch) columns


def rows(spec: TableSpec, *given: dict[str, Any]) -> dict[str, list[Any]]:
    """Insert columns of ``spec`` for the rows ``given``; columns not named are blank."""
    return {name: [r.get(name, _blank(t)) for r in given] for name, t in spec.columns}


def alert(account: str, rule: str, fired_ms: int, score: float, severity: str = "warning") -> dict[str, Any]:
    return {"alert_id": f"{rule}:{account}:{fired_ms}", "fired_ts": fired_ms, "account_id": account, "rule": rule,
            "severity": severity, "score": score, "window_start": fired_ms // 1000 - 60}


@pytest.fixture
def on_call_db(ch_client: Client, ch_database: str, ch_settings: Settings,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    apply_migrations(ch_client, ch_database)
    writer = ClickHouseWriter(ch_client, ch_database)
    writer.write(ALERTS.name, rows(ALERTS,
                                   alert("org-1", "score_high", NOW_MS - 3 * HOUR, 81.0),
                                   alert("org-1", "score_high", NOW_MS - 2 * HOUR, 93.5, "critical"),
                                   alert("org-2", "score_high", NOW_MS - 30 * HOUR, 75.0),
                                   alert("org-3", "probing", NOW_MS - HOUR, 40.0)))
    writer.write(SIGNATURES_1M.name, rows(SIGNATURES_1M, {"account_id": "org-quiet", "window_start": 1_770_000_000}))
    # The commands connect through settings: the session's chDB, this test's database.
    monkeypatch.setenv("DW_CLICKHOUSE_DSN", ch_settings.effective_clickhouse_dsn)
    monkeypatch.setenv("DW_CLICKHOUSE_DATABASE", ch_database)
    monkeypatch.setenv("USER", "tester")
    yield ch_database
    ch_client.database = ch_settings.clickhouse_database  # connect() pointed the shared client at this test's db


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def listed(*args: str) -> list[dict[str, Any]]:
    done = run("alerts", "list", "--format", "json", *args)
    assert done.exit_code == 0, done.output
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def test_list_groups_by_account_and_rule_within_the_window(on_call_db: str) -> None:
    groups = listed()
    assert [(g["account_id"], g["rule"]) for g in groups] == [("org-3", "probing"), ("org-1", "score_high")]
    org1 = groups[1]
    assert (org1["firings"], org1["max_score"], org1["severity"], org1["feedback"]) == (2, 93.5, "critical", None)
    assert {g["account_id"] for g in listed("--since", "2d")} == {"org-1", "org-2", "org-3"}
    only = listed("--since", "all", "--rule", "score_high", "--account", "org-2")
    assert [g["account_id"] for g in only] == ["org-2"]
    table = run("alerts", "list")
    assert table.exit_code == 0 and "org-1" in table.stdout and "score_high" in table.stdout


def test_false_positive_is_recorded_shown_and_suppresses(ch_client: Client, on_call_db: str) -> None:
    done = run("alerts", "false-positive", "org-1", "--reason", "partner evaluation key", "--rule", "score_high")
    assert done.exit_code == 0, done.output
    assert "recorded false_positive for org-1 (rule score_high) by tester" in done.stdout
    assert "no paging until" in done.stdout and "warning" not in done.output
    org1 = next(g for g in listed() if g["account_id"] == "org-1")
    assert org1["feedback"]["verdict"] == "false_positive"
    assert org1["feedback"]["reason"] == "partner evaluation key" and org1["feedback"]["analyst"] == "tester"
    (entry,) = load_feedback(ch_client, on_call_db)
    assert entry.suppress_until_ms - entry.recorded_at_ms == 7 * 86_400_000  # DW_FEEDBACK_SUPPRESS_DAYS default
    suppressions = FeedbackSuppressions.load(ch_client, on_call_db)
    assert suppressions.lookup("score_high", "org-1", NOW_MS) == (entry.feedback_id, "false_positive")
    assert suppressions.lookup("probing", "org-1", NOW_MS) is None

    confirmed = run("alerts", "confirm", "org-1", "--reason", "same prompts as the fleet", "--analyst", "carol")
    assert confirmed.exit_code == 0
    org1 = next(g for g in listed() if g["account_id"] == "org-1")
    assert (org1["feedback"]["verdict"], org1["feedback"]["analyst"]) == ("confirmed", "carol")
    assert FeedbackSuppressions.load(ch_client, on_call_db).lookup("score_high", "org-1", NOW_MS) is None


@pytest.mark.parametrize("command", ["ack", "resolve", "false-positive", "confirm"])
def test_empty_reason_is_refused(ch_client: Client, on_call_db: str, command: str) -> None:
    done = CliRunner().invoke(main, ["alerts", command, "org-1", "--reason", "  "])
    assert done.exit_code == 2 and "--reason" in done.output and "must not be empty" in done.output
    assert load_feedback(ch_client, on_call_db) == []


def test_unknown_account_warns_but_records(ch_client: Client, on_call_db: str) -> None:
    done = run("alerts", "ack", "org-typo", "--reason", "looking")
    assert done.exit_code == 0
    assert "warning: account 'org-typo' has no alerts and no signatures" in done.stderr
    assert [f.verdict for f in load_feedback(ch_client, on_call_db)] == ["ack"]
    quiet = run("alerts", "resolve", "org-quiet", "--reason", "checked")  # has signatures, no alerts
    assert quiet.exit_code == 0 and "warning" not in quiet.stderr
    wrong_rule = run("alerts", "ack", "org-1", "--reason", "x", "--rule", "probing")
    assert "has no alerts of rule 'probing'" in wrong_rule.stderr


def test_bad_since_is_refused(on_call_db: str) -> None:
    done = CliRunner().invoke(main, ["alerts", "list", "--since", "yesterday"])
    assert done.exit_code == 2 and "'yesterday'" in done.output
