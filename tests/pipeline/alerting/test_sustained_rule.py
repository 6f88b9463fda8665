"""The packaged ``extraction_score_sustained`` rule: a score held just under the page threshold pages
after 15 minutes of consecutive frames; a score over the threshold pages once, through the other rule."""

from __future__ import annotations

from pipeline.alerting.engine import AlertSetup
from pipeline.alerting.rules import SCORE_RULE, load_rules
from tests.support.alerting import MIN_MS, evaluate

SUSTAINED = "extraction_score_sustained"


def frames(account: str, minutes: range, score: float) -> list[tuple[str, int, float]]:
    return [(account, m, score) for m in minutes]


def fired(rows: list[tuple[str, int, float]], *, score_threshold: float | None = None) -> list[tuple[str, str, int]]:
    out, _ = evaluate(AlertSetup(load_rules(score_threshold=score_threshold)), rows)
    return sorted((r.labels["alertname"], r.labels["account_id"], r.starts_at_ms // MIN_MS) for r in out.transitions)


def test_a_score_held_under_the_threshold_pages_once_it_has_held_for_15_minutes() -> None:
    # 65 on every frame from minute 0: true since the end of frame 0, held 15 minutes at the end of frame 15
    # (``for: 0m`` fires at the end of the first true frame).
    assert fired(frames("org-s", range(15), 65)) == []
    assert fired(frames("org-s", range(30), 65)) == [(SUSTAINED, "org-s", 16)]


def test_a_minute_without_calls_or_under_the_floor_restarts_the_count() -> None:
    gap = frames("org-g", range(10), 65) + frames("org-g", range(11, 25), 65)  # minute 10 missing
    dip = [*frames("org-d", range(10), 65), ("org-d", 10, 59.9), *frames("org-d", range(11, 25), 65)]
    assert fired(dip + gap) == []
    assert fired(frames("org-g", range(10), 65) + frames("org-g", range(11, 30), 65)) == [(SUSTAINED, "org-g", 27)]


def test_an_account_over_the_threshold_pages_through_the_high_rule_only() -> None:
    assert fired(frames("org-h", range(40), 75)) == [(SCORE_RULE, "org-h", 1)]


def test_the_score_threshold_override_moves_the_sustained_rules_ceiling_too() -> None:
    rules = load_rules(score_threshold=80)
    assert rules[SUSTAINED].rule.params == {"floor": 60, "threshold": 80}
    assert rules[SCORE_RULE].rule.params["threshold"] == 80
    assert fired(frames("org-h", range(40), 75), score_threshold=80) == [(SUSTAINED, "org-h", 16)]
