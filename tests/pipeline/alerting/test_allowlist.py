"""The allow-list: validation naming the entry, exempt and raised thresholds, expiry, links through
keys/cards/ASNs; and analyst false positives, which suppress the same way."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.alerting.allowlist import AllowListError, load_allowlist
from pipeline.alerting.engine import AlertSetup, AlertState
from pipeline.alerting.feedback import FeedbackSuppressions, new_feedback
from pipeline.alerting.rules import load_rules
from pipeline.alerting.transitions import RESOLVED
from tests.support.alerting import MIN_MS, evaluate, write_yaml

DAY0_MS = 0  # the tests' frames sit at the start of 1970: entries expiring in 2030 apply, 1969 ones do not


def entry(**kw: Any) -> dict[str, Any]:
    base = {"id": "partner-eval", "account_id": "org-p", "reason": "partner's evaluation key", "owner": "t&s",
            "expires": "2030-01-31", "effect": "exempt"}
    return {**base, **kw}


def setup_with(tmp_path: Path, *entries: dict[str, Any]) -> AlertSetup:
    path = write_yaml(tmp_path / "allow.yaml", {"version": 1, "entries": list(entries)})
    return AlertSetup(load_rules(), load_allowlist(path))


@pytest.mark.parametrize("bad, fragment", [
    (lambda e: e.pop("expires"), r"entries\[0\]\.expires: Field required"),
    (lambda e: e.pop("owner"), r"entries\[0\]\.owner: Field required"),
    (lambda e: e.update(reason=""), r"entries\[0\]\.reason"),
    (lambda e: e.update(api_key_id="k1"), r"entries\[0\]: .*exactly one of account_id, api_key_id"),
    (lambda e: e.pop("account_id"), r"entries\[0\]: .*exactly one of .*got none"),
    (lambda e: e.update(effect="ignore"), r"entries\[0\]\.effect"),
    (lambda e: e.update(effect={"raise_threshold": 500}), r"entries\[0\]\.effect.*raise_threshold"),
    (lambda e: e.update(expires="someday"), r"entries\[0\]\.expires"),
])
def test_a_bad_entry_fails_at_start_naming_it(tmp_path: Path, bad: Any, fragment: str) -> None:
    e = entry()
    bad(e)
    path = write_yaml(tmp_path / "allow.yaml", {"version": 1, "entries": [e]})
    with pytest.raises(AllowListError, match=fragment):
        load_allowlist(path)


def test_repeated_ids_are_refused(tmp_path: Path) -> None:
    path = write_yaml(tmp_path / "allow.yaml", {"version": 1, "entries": [entry(), entry(account_id="x")]})
    with pytest.raises(AllowListError, match=r"entries: .*repeated: \['partner-eval'\]"):
        load_allowlist(path)


def test_an_exempt_account_is_recorded_counted_and_pages_nobody(tmp_path: Path) -> None:
    setup = setup_with(tmp_path, entry())
    out, state = evaluate(setup, [("org-p", 0, 95), ("org-x", 0, 95)])
    assert dict(zip(out.alerts.account_id, out.alerts.suppressed_by, strict=True)) == \
        {"org-p": "allowlist:partner-eval", "org-x": ""}
    assert [t.labels["account_id"] for t in out.transitions] == ["org-x"]
    assert out.suppressed == {("extraction_score_high", "allowlist"): 1}
    out, _ = evaluate(setup, [("org-p", 500, 1)], state, now_min=500)
    assert [t.labels["account_id"] for t in out.transitions] == ["org-x"]  # only the paged one resolves


def test_an_expired_entry_pages_again(tmp_path: Path) -> None:
    setup = setup_with(tmp_path, entry(expires="1970-01-01T00:30:00Z"))
    out, _ = evaluate(setup, [("org-p", 10, 95), ("org-p", 100, 1), ("org-p", 200, 95)])
    # minute 10 is before the expiry (suppressed), minute 200 after it: a page
    assert out.alerts.suppressed_by == ["allowlist:partner-eval", ""]
    assert [t.starts_at_ms for t in out.transitions] == [201 * MIN_MS]


def test_a_raised_threshold_fires_only_above_it_and_records_what_it_held_back(tmp_path: Path) -> None:
    setup = setup_with(tmp_path, entry(effect={"raise_threshold": 90}))
    out, state = evaluate(setup, [("org-p", 0, 75), ("org-p", 1, 80), ("org-p", 2, 96)])
    assert sorted(zip(out.alerts.fired_ms, out.alerts.suppressed_by, strict=True)) == \
        [(1 * MIN_MS, "allowlist:partner-eval"), (3 * MIN_MS, "")]
    assert [t.starts_at_ms for t in out.transitions] == [3 * MIN_MS]
    assert out.suppressed == {("extraction_score_high", "allowlist"): 1}
    restored = AlertState()
    restored.load_account("org-p", state.account_json("org-p") or {})
    out, _ = evaluate(setup, [("org-p", 3, 97), ("org-p", 4, 80)], restored)
    assert len(out.alerts) == 0  # both lifecycles carried over the checkpoint


def test_entries_on_keys_cards_and_asns_reach_the_account_through_its_events(tmp_path: Path) -> None:
    setup = setup_with(tmp_path, entry(id="k", account_id=None, api_key_id="key-eval"),
                       entry(id="card", account_id=None, payment_fingerprint="fp-red"),
                       entry(id="asn", account_id=None, asn=64512))
    raw = {"account_id": ["a1", "a1", "a2", "a3", "a4"], "api_key_id": ["k0", "key-eval", "k2", "k3", "k4"],
           "payment_fingerprint": ["", "", "fp-red", "", ""], "asn": [1, 1, 1, 64512, 7]}
    out, state = evaluate(setup, [(a, 0, 95) for a in ("a1", "a2", "a3", "a4")], raw=raw)
    assert out.alerts.suppressed_by == ["allowlist:k", "allowlist:card", "allowlist:asn", ""]
    assert state.account_json("a1") == {"l": ["k"], "r": state.account_json("a1")["r"]}  # type: ignore[index]
    # Later batches without those events: the link is remembered with the account.
    out, _ = evaluate(setup, [("a1", 200, 95)], state, raw={"account_id": ["a1"], "api_key_id": ["k0"],
                                                             "payment_fingerprint": [""], "asn": [1]})
    assert out.alerts.suppressed_by == ["allowlist:k"]


def test_a_false_positive_suppresses_and_a_later_one_lifts_a_firing_alert(tmp_path: Path) -> None:
    setup = AlertSetup(load_rules())
    fp = new_feedback("org-f", "false_positive", "benchmark run", "ana", suppress_days=1, now_ms=DAY0_MS)
    setup.context.feedback = FeedbackSuppressions([fp])
    out, _ = evaluate(setup, [("org-f", 5, 95)])
    assert out.alerts.suppressed_by == [f"false_positive:{fp.feedback_id}"] and out.transitions == []
    assert out.suppressed == {("extraction_score_high", "false_positive"): 1}

    setup.context.feedback = None
    out, state = evaluate(setup, [("org-g", 5, 95)])
    [fired] = out.transitions
    late_fp = new_feedback("org-g", "false_positive", "known tester", "ana", rule="extraction_score_high",
                           now_ms=6 * MIN_MS)
    setup.context.feedback = FeedbackSuppressions([late_fp])
    out, _ = evaluate(setup, [("org-z", 8, 1)], state, now_min=8)
    [lift] = out.transitions
    assert (lift.state, lift.alert_key, lift.ends_at_ms) == (RESOLVED, fired.alert_key, 8 * MIN_MS)
    out, _ = evaluate(setup, [("org-g", 9, 99)], state, now_min=9)
    assert out.transitions == [] and len(out.alerts) == 0  # still the same (now silenced) alert
