"""The packaged ``extraction_score_sustained`` rule: a score held just under the page threshold pages
after 15 minutes, quiet or low stretches of up to 5 minutes included; a score over the threshold pages
once, through the other rule."""

from __future__ import annotations

from pipeline.alerting.rules import SCORE_RULE, load_rules
from tests.support.alerting import held, pages

SUSTAINED = "extraction_score_sustained"


def test_a_score_held_under_the_threshold_pages_once_it_has_held_for_15_minutes() -> None:
    # 65 on every frame from minute 0: true since the end of frame 0, held 15 minutes at the end of frame 15
    # (``for: 0m`` fires at the end of the first true frame).
    assert pages(held("org-s", range(15), 65)) == []
    assert pages(held("org-s", range(30), 65)) == [(SUSTAINED, "org-s", 16)]


def test_up_to_five_minutes_without_calls_or_under_the_floor_do_not_restart_the_count() -> None:
    quiet = held("org-q", range(5), 65) + held("org-q", range(10, 25), 65)  # minutes 5-9 without calls
    dips = [(a, m, 50.0 if m % 3 == 1 else s) for a, m, s in held("org-d", range(30), 62)]  # a third under 55
    assert pages(quiet + dips) == [(SUSTAINED, "org-d", 16), (SUSTAINED, "org-q", 16)]


def test_six_minutes_without_a_true_frame_restart_the_count() -> None:
    quiet = held("org-q", range(5), 65) + held("org-q", range(11, 25), 65)  # minutes 5-10 without calls
    low = [*held("org-l", range(5), 65), *held("org-l", range(5, 11), 54.9), *held("org-l", range(11, 25), 65)]
    assert pages(quiet + low) == []
    assert pages(held("org-q", range(5), 65) + held("org-q", range(11, 30), 65)) == [(SUSTAINED, "org-q", 27)]


def test_an_account_over_the_threshold_pages_through_the_high_rule_only() -> None:
    assert pages(held("org-h", range(40), 75)) == [(SCORE_RULE, "org-h", 1)]


def test_the_score_threshold_override_moves_the_sustained_rules_ceiling_too() -> None:
    rules = load_rules(score_threshold=80)
    assert rules[SUSTAINED].rule.params == {"floor": 55, "threshold": 80}
    assert rules[SCORE_RULE].rule.params["threshold"] == 80
    assert pages(held("org-h", range(40), 75), score_threshold=80) == [(SUSTAINED, "org-h", 16)]
