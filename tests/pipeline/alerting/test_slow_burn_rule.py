"""The packaged ``extraction_score_slow_burn`` rule: a score of 40 or more, under the page threshold, held
for 90 minutes with quiet or low stretches of up to 10 minutes pages; and the example Alertmanager
configuration holds it back for an account another score rule has already paged."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pipeline.alerting.rules import SCORE_RULE, load_rules
from tests.support.alerting import held, pages
from tests.support.alertmanager import (
    Alertmanager,
    Receiver,
    alertmanager_installed,
    example_config,
    now_ms,
    send,
    wait_for,
)
from tests.support.transitions import transition

SLOW = "extraction_score_slow_burn"
SUSTAINED = "extraction_score_sustained"


def test_a_moderate_score_held_for_90_minutes_pages() -> None:
    # 45 on every frame from minute 0: held 90 minutes at the end of frame 90.
    assert pages(held("org-m", range(90), 45)) == []
    assert pages(held("org-m", range(120), 45)) == [(SLOW, "org-m", 91)]


def test_up_to_ten_minutes_without_a_true_frame_do_not_restart_the_count() -> None:
    # A batched sweep: 20 minutes of calls, 10 without, over and over; and one that dips under 40.
    batches = [r for start in range(0, 120, 30) for r in held("org-b", range(start, start + 20), 50)]
    dips = [(a, m, 35.0 if m % 4 == 1 else s) for a, m, s in held("org-d", range(120), 45)]
    assert pages(batches + dips) == [(SLOW, "org-b", 91), (SLOW, "org-d", 91)]


def test_eleven_minutes_without_a_true_frame_restart_the_count() -> None:
    batches = [r for start in range(0, 150, 31) for r in held("org-b", range(start, start + 20), 50)]
    assert pages(batches) == []
    assert pages(held("org-q", range(60), 45) + held("org-q", range(71, 170), 45)) == [(SLOW, "org-q", 162)]


def test_a_score_under_40_never_pages_and_one_over_the_threshold_pages_once_through_the_high_rule() -> None:
    assert pages(held("org-l", range(240), 39.9)) == []
    assert pages(held("org-h", range(240), 75)) == [(SCORE_RULE, "org-h", 1)]


def test_an_account_held_at_60_pages_through_the_sustained_rule_first() -> None:
    # 55-70 is both rules' range: the sustained rule pages at 16, this one at 91 (Alertmanager inhibits it).
    assert pages(held("org-s", range(120), 60)) == [(SLOW, "org-s", 91), (SUSTAINED, "org-s", 16)]


def test_the_score_threshold_override_moves_its_ceiling_too() -> None:
    assert load_rules(score_threshold=80)[SLOW].rule.params == {"floor": 40, "threshold": 80}
    assert pages(held("org-h", range(120), 75), score_threshold=80) == [(SLOW, "org-h", 91), (SUSTAINED, "org-h", 16)]


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Alertmanager, Receiver]]:
    if not alertmanager_installed():
        pytest.skip("prometheus-alertmanager is not installed")
    with Receiver() as receiver, Alertmanager(tmp_path_factory.mktemp("am-slow"), example_config(receiver.url)) as am:
        yield am, receiver


@pytest.mark.slow
@pytest.mark.parametrize("paged_by", [SCORE_RULE, SUSTAINED])
def test_the_example_alertmanager_config_inhibits_it_for_an_account_already_paged(
        alertmanager: tuple[Alertmanager, Receiver], paged_by: str) -> None:
    am, receiver = alertmanager
    start = now_ms() - 60_000
    paged, alone = f"org-paged-{paged_by}", f"org-alone-{paged_by}"

    # As in a run: the other rule pages long before this one's 90 minutes are up.
    assert all(r.ok for r in send(am, [transition(paged, rule=paged_by, starts_at_ms=start)]))
    wait_for(lambda: [a for a in am.alerts(account_id=paged, alertname=paged_by) if a["status"]["state"] == "active"],
             what=f"the {paged_by} alert held by Alertmanager")
    slow = [transition(a, rule=SLOW, severity="warning", action="rate_limit", starts_at_ms=start)
            for a in (paged, alone)]
    assert all(r.ok for r in send(am, slow))

    def state(account: str) -> str | None:
        found = am.alerts(account_id=account, alertname=SLOW)
        return found[0]["status"]["state"] if found else None

    def notified(account: str) -> list[dict[str, object]]:
        return [a for r in receiver.received() if isinstance(r.body, dict) for a in r.body.get("alerts", [])
                if a["labels"].get("account_id") == account and a["labels"].get("alertname") == SLOW]

    # Alertmanager marks an alert inhibited when its group is flushed (group_wait, 1 s here): active until then.
    wait_for(lambda: state(paged) == "suppressed", what="the slow-burn alert of an account already paged inhibited")
    (inhibited,) = am.alerts(account_id=paged, alertname=SLOW)
    assert inhibited["status"]["inhibitedBy"]
    wait_for(lambda: notified(alone), what="the slow-burn alert of an account not paged sent to the receiver")
    assert state(alone) == "active"
    assert notified(paged) == []
