"""Analyst feedback: validation, the table round trip, and false-positive suppression lookups."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from clickhouse_connect.driver.client import Client

from pipeline.alerting.feedback import (
    FeedbackSuppressions,
    load_feedback,
    new_feedback,
    record,
)
from schemas.migrate import apply_migrations
from tests.support.feedback import DAY, T0, fb


def test_false_positive_sets_suppress_until_others_do_not() -> None:
    assert fb("org-1", "false_positive", days=2).suppress_until_ms == T0 + 2 * DAY
    for verdict in ("ack", "resolved", "confirmed"):
        assert fb("org-1", verdict).suppress_until_ms == 0


@pytest.mark.parametrize(("field", "kwargs"), [
    ("reason", {"reason": "  "}),
    ("verdict", {"verdict": "benign"}),
    ("account_id", {"account_id": ""}),
    ("analyst", {"analyst": ""}),
])
def test_bad_input_is_refused_naming_the_field(field: str, kwargs: dict[str, str]) -> None:
    args = {"account_id": "org-1", "verdict": "ack", "reason": "why", "analyst": "alice"} | kwargs
    with pytest.raises(ValueError, match=f"^{field}:"):
        new_feedback(args["account_id"], args["verdict"], args["reason"], args["analyst"])


def test_same_verdict_same_id_different_time_new_id() -> None:
    assert fb("org-1", "ack").feedback_id == fb("org-1", "ack").feedback_id
    assert fb("org-1", "ack").feedback_id != fb("org-1", "ack", at=T0 + 1).feedback_id


def test_false_positive_suppresses_its_rule_until_it_expires() -> None:
    entry = fb("org-1", "false_positive", rule="score_high", days=1)
    s = FeedbackSuppressions([entry])
    assert s.lookup("score_high", "org-1", T0 + 5) == (entry.feedback_id, "false_positive")
    assert s.lookup("score_high", "org-1", T0 - DAY) is not None  # a lagging worker is covered too
    assert s.lookup("score_high", "org-1", T0 + DAY) is None  # expired
    assert s.lookup("other_rule", "org-1", T0 + 5) is None
    assert s.lookup("score_high", "org-2", T0 + 5) is None
    assert s.false_positive_accounts == {"org-1"} and not s.confirmed_accounts


def test_empty_rule_covers_every_rule_and_confirmed_lifts_it() -> None:
    fp = fb("org-1", "false_positive")
    assert FeedbackSuppressions([fp]).lookup("any_rule", "org-1", T0) is not None
    lifted = FeedbackSuppressions([fp, fb("org-1", "confirmed", rule="r1", at=T0 + 10)])
    assert lifted.lookup("r1", "org-1", T0 + 20) is None  # confirmed for r1 is newer
    assert lifted.lookup("r2", "org-1", T0 + 20) is not None  # r2 is still a known false positive
    assert lifted.confirmed_accounts == {"org-1"} and not lifted.false_positive_accounts
    # ack and resolved neither suppress nor lift.
    acked = FeedbackSuppressions([fp, fb("org-1", "ack", at=T0 + 10), fb("org-1", "resolved", at=T0 + 11)])
    assert acked.lookup("r1", "org-1", T0 + 20) is not None


def test_a_newer_false_positive_overrides_a_confirmation() -> None:
    s = FeedbackSuppressions([fb("org-1", "confirmed", at=T0), fb("org-1", "false_positive", at=T0 + 1)])
    assert s.lookup("r", "org-1", T0 + 2) is not None
    assert s.false_positive_accounts == {"org-1"}


@pytest.fixture
def feedback_db(ch_client: Client, ch_database: str) -> Iterator[str]:
    apply_migrations(ch_client, ch_database)  # m0005_alert_feedback creates the table
    yield ch_database


@pytest.mark.clickhouse
def test_record_and_load_round_trip(ch_client: Client, feedback_db: str) -> None:
    fp = fb("org-1", "false_positive", rule="score_high")
    conf = fb("org-2", "confirmed", at=T0 + 1000)
    ack = fb("org-3", "ack", at=T0 + 2000)
    for entry in (fp, conf, ack, fp):  # the repeated insert is deduplicated
        record(ch_client, feedback_db, entry)
    assert load_feedback(ch_client, feedback_db) == [fp, conf, ack]
    assert load_feedback(ch_client, feedback_db, accounts=["org-2"]) == [conf]
    assert load_feedback(ch_client, feedback_db, as_of_ms=T0 + 1000) == [fp, conf]
    s = FeedbackSuppressions.load(ch_client, feedback_db, as_of_ms=T0 + 500)
    assert s.lookup("score_high", "org-1", T0 + 600) == (fp.feedback_id, "false_positive")
    assert not s.confirmed_accounts  # recorded after the as-of time
    later = FeedbackSuppressions.load(ch_client, feedback_db, as_of_ms=T0 + 5000)
    assert later.confirmed_accounts == {"org-2"} and len(later) == 2
