"""The account rules engine: firings, resolutions, labels, restarts, and a per-row reference on random data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.alerting.engine import AlertSetup, AlertState, evaluate_accounts
from pipeline.alerting.lifecycle import reference_lifecycle
from pipeline.alerting.rules import load_rules
from pipeline.alerting.transitions import FIRING, RESOLVED
from tests.support.alerting import MIN_MS, SIGNALS, evaluate, setup_from, signatures


def test_default_rule_fires_once_with_labels_and_resolves_after_its_quiet_period(tmp_path: Path) -> None:
    setup = AlertSetup(load_rules(), grafana_url="http://grafana:3000")
    setup.context.cluster_of = {"org-a": "c-0001"}.get
    raw = {"account_id": ["org-a", "org-a", "org-a"], "model": ["m-small", "m-large", "m-large"]}
    out, state = evaluate(setup, [("org-a", 0, 50), ("org-a", 1, 75), ("org-a", 2, 95), ("org-b", 1, 10)], raw=raw)
    rows = out.alerts
    assert rows.alert_id == [f"extraction_score_high:org-a:{2 * MIN_MS}"]
    assert rows.fired_ts_ms.tolist() == [2 * MIN_MS] and rows.window_start_s.tolist() == [60]
    assert (rows.severity, rows.cluster_id, rows.mode, rows.action, rows.suppressed_by) == \
        (["warning"], ["c-0001"], ["page"], ["rate_limit"], [""])
    assert rows.signals == [["distribution_probing", "template_sweep"]]  # the 0.5-point one is not listed
    assert rows.signal_points == [[45.0, 30.0]]
    [t] = out.transitions
    assert t.state == FIRING and t.starts_at_ms == 2 * MIN_MS and t.ends_at_ms is None
    assert dict(t.labels) == {"team": "trust-and-safety", "alertname": "extraction_score_high",
                              "severity": "warning", "account_id": "org-a", "cluster_id": "c-0001",
                              "model": "m-large", "action": "rate_limit", "mode": "page"}
    assert t.annotations["summary"] == "Account org-a looks like model extraction (score 75)"
    assert t.annotations["dashboard_url"] == \
        "http://grafana:3000/d/dw-account/account-drill-down?var-account=org-a"
    assert dict(t.signals) == {"distribution_probing": 45.0, "template_sweep": 30.0}

    out, _ = evaluate(setup, [("org-a", 3, 99), ("org-a", 30, 10)], state)
    assert len(out.alerts) == 0 and out.transitions == []  # still the same alert: no re-fire, no re-page
    out, _ = evaluate(setup, [("org-b", 40, 10)], state, now_min=3 + 1 + 59)
    assert out.transitions == []  # the quiet hour is not over
    out, _ = evaluate(setup, [("org-b", 70, 10)], state, now_min=3 + 1 + 60)
    [r] = out.transitions
    assert (r.state, r.starts_at_ms, r.ends_at_ms, r.alert_key) == (RESOLVED, 2 * MIN_MS, 64 * MIN_MS, t.alert_key)
    assert state.subjects == {}


def test_a_restart_from_checkpointed_state_neither_refires_nor_forgets(tmp_path: Path) -> None:
    setup = AlertSetup(load_rules())
    first, state = evaluate(setup, [("org-a", 0, 80), ("org-a", 1, 80)])
    assert len(first.transitions) == 1
    restored = AlertState()
    restored.load_account("org-a", state.account_json("org-a") or {})
    again, _ = evaluate(setup, [("org-a", 2, 85)], restored)
    assert len(again.alerts) == 0 and again.transitions == []
    later, _ = evaluate(setup, [("org-a", 100, 5)], restored)
    assert [(t.state, t.alert_key, t.ends_at_ms) for t in later.transitions] == \
        [(RESOLVED, first.transitions[0].alert_key, (2 + 1 + 60) * MIN_MS)]


def test_a_pending_run_waits_across_batches_for_max_gap_minutes_then_is_dropped(tmp_path: Path) -> None:
    def edit(doc: dict) -> None:
        doc["rules"] = [doc["rules"][0]]
        doc["rules"][0].update(condition="score >= 50", params={}, max_gap="3m", **{"for": "5m"})
    setup = setup_from(tmp_path, edit)
    _, state = evaluate(setup, [("org-a", m, 60) for m in (0, 1, 2)])
    out, _ = evaluate(setup, [("org-b", 5, 10)], state, now_min=6)  # minutes 3-5 closed without org-a
    assert len(out.alerts) == 0 and "org-a" in state.subjects  # 3 minutes without a true frame: still pending
    out, _ = evaluate(setup, [("org-a", 6, 60)], state)
    assert out.alerts.fired_ms == [7 * MIN_MS]  # pending since minute 0: for 5m reached at 6

    _, state = evaluate(setup, [("org-a", m, 60) for m in (0, 1, 2)])
    evaluate(setup, [("org-b", 6, 10)], state, now_min=7)  # minute 6 closed too: one minute past the gap
    assert state.subjects == {}  # nothing can continue that run: its state is dropped
    out, _ = evaluate(setup, [("org-a", m, 60) for m in (7, 8)], state)
    assert len(out.alerts) == 0


def test_max_gap_is_refused_on_cluster_rules(tmp_path: Path) -> None:
    def edit(doc: dict) -> None:
        next(r for r in doc["rules"] if r["subject"] == "cluster")["max_gap"] = "5m"
    with pytest.raises(ValueError, match="max_gap is for account rules only"):
        setup_from(tmp_path, edit)


def test_monitor_mode_records_and_pages_nobody(tmp_path: Path) -> None:
    setup = setup_from(tmp_path, lambda d: d["rules"][0].update(mode="monitor"))
    out, state = evaluate(setup, [("org-a", 0, 80)])
    assert out.alerts.mode == ["monitor"] and out.alerts.suppressed_by == [""]
    assert out.transitions == [] and not out.suppressed
    out, _ = evaluate(setup, [("org-a", 200, 1)], state)
    assert out.transitions == []  # its resolution is not announced either


def test_every_operator_of_a_rule_runs_on_the_signature_columns(tmp_path: Path) -> None:
    def edit(doc: dict) -> None:
        doc["rules"][0].update(condition="signal.distribution_probing >= 30 and calls_1h >= 100", params={})
    setup = setup_from(tmp_path, edit)
    out, _ = evaluate(setup, [("a", 0, 60), ("b", 0, 40), ("c", 0, 60)], calls_1h=[100, 500, 99])
    assert out.alerts.account_id == ["a"]  # b: 24 points; c: too few calls


def reference_firings(rows: list[tuple[str, int, float]], calls: list[float], points: list[list[float]],
                      for_minutes: int, resolve_minutes: int, max_gap: int = 0) -> list[tuple[str, int]]:
    """Per row, plain Python: the condition, then the lifecycle reference."""
    truth = [(a, m, (s >= 50 and c >= 100) or p[0] >= 20)
             for (a, m, s), c, p in zip(rows, calls, points, strict=True)]
    fires, _ = reference_lifecycle(truth, for_minutes, resolve_minutes, max_gap=max_gap)  # type: ignore[arg-type]
    return [(str(a), m * MIN_MS) for a, m in fires]


@pytest.mark.parametrize("seed", range(4))
def test_vectorised_engine_equals_a_per_row_reference_on_random_data(tmp_path: Path, seed: int) -> None:
    max_gap = 0 if seed < 2 else 3

    def edit(doc: dict) -> None:
        doc["rules"] = [doc["rules"][0]]
        doc["rules"][0].update(condition="score >= 50 and calls_1h >= 100 or signal.distribution_probing >= 20",
                               params={}, max_gap=f"{max_gap}m", **{"for": "2m", "resolve_after": "10m"})
    setup = setup_from(tmp_path, edit)
    rng = np.random.default_rng(seed)
    rows, calls, points = [], [], []
    for k in range(30):
        minutes = np.sort(rng.choice(300, size=int(rng.integers(5, 150)), replace=False))
        for m in minutes.tolist():
            rows.append((f"acct-{k:02d}", m, float(np.float32(rng.uniform(0, 100)))))
            calls.append(float(rng.choice([50.0, 150.0])))
            points.append([round(float(rng.uniform(0, 40)), 2), 1.0, 0.0])
    expected = reference_firings(rows, calls, points, 2, 10, max_gap)
    assert expected
    out = evaluate_accounts(setup, signatures(rows, calls, points), AlertState())
    assert list(zip(out.alerts.account_id, out.alerts.fired_ms, strict=True)) == expected


def test_batches_with_checkpointed_state_give_the_same_firings(tmp_path: Path) -> None:
    setup = setup_from(tmp_path, lambda d: d["rules"][0].update(**{"for": "2m", "resolve_after": "5m"}))
    rng = np.random.default_rng(7)
    rows = [(f"a{k}", m, float(rng.choice([10.0, 80.0], p=[0.4, 0.6]))) for k in range(8) for m in range(120)]
    whole = evaluate_accounts(setup, signatures(rows), AlertState())
    state, fired = AlertState(), []
    for lo in range(0, 120, 17):
        part = [r for r in rows if lo <= r[1] < lo + 17]
        out = evaluate_accounts(setup, signatures(part), state)
        fired += list(zip(out.alerts.account_id, out.alerts.fired_ms, strict=True))
        restored = AlertState()  # every batch: a restart from the checkpointed JSON
        for account in state.subjects:
            restored.load_account(account, state.account_json(account) or {})
        state = restored
    assert sorted(fired) == sorted(zip(whole.alerts.account_id, whole.alerts.fired_ms, strict=True))
    assert len(fired) > 8


def test_signal_points_read_back_per_row_when_scoring_versions_differ(tmp_path: Path) -> None:
    def edit(doc: dict) -> None:
        doc["rules"][0].update(condition="signal.template_sweep >= 10", params={})
    setup = setup_from(tmp_path, edit)
    sig = signatures([("a", 0, 50), ("b", 0, 50)])
    sig["signal_names"] = [SIGNALS, ["template_sweep", "distribution_probing"]]
    sig["signal_points"] = [[30.0, 5.0, 0.0], [12.0, 30.0]]
    out = evaluate_accounts(setup, sig, AlertState())
    assert out.alerts.account_id == ["b"]


def test_an_alert_resolved_by_the_watermark_alone_is_checkpointed_again() -> None:
    from pipeline.detect.detector import Detector
    from pipeline.settings import load_settings

    det = Detector(load_settings(), n_partitions=1)
    det.accounts.slots_for(["org-a"])
    det.frames.ensure_slots(1)
    evaluate_accounts(det.alerting, signatures([("org-a", 0, 90)]), det.alert_state)
    det._mark_alert_changes()
    det.frames.take_dirty_slots()
    found = evaluate_accounts(det.alerting, signatures([]), det.alert_state, now_ms=500 * MIN_MS)
    assert [t.state for t in found.transitions] == [RESOLVED]
    det._mark_alert_changes()
    assert det.frames.take_dirty_slots().tolist() == [0]
    assert det.entity_extras("account", 0) == {}
