"""Recommended actions: the message contract, the detect step's order (ClickHouse → actions → checkpoint →
commit), monitor mode publishing nothing, and the publisher against the test broker."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from jobs.bench.kafka_io import create_topics
from pipeline.alerting.actions import LIFT, ActionMessage, ActionPublisher, action_messages, idempotency_key
from pipeline.alerting.engine import AlertSetup, AlertState, evaluate_accounts
from pipeline.alerting.rules import load_rules
from pipeline.alerting.transitions import AlertTransition
from pipeline.detect.detector import Detector
from pipeline.detect.step import DetectStep
from pipeline.settings import load_settings
from pipeline.state.manager import StateManager
from pipeline.stats import PipelineStats
from tests.support.alerting import MIN_MS, rules_doc, signatures, write_yaml
from tests.support.detect_step import Effects, FakeDeadLetters, FakeStateTopic, FakeWriter, harvest, make_batch


def account_transitions() -> list[AlertTransition]:
    setup = AlertSetup(load_rules())
    state = AlertState()
    fired = evaluate_accounts(setup, signatures([("org-a", 0, 80), ("org-a", 1, 95)]), state).transitions
    resolved = evaluate_accounts(setup, signatures([("org-a", 200, 1)]), state).transitions
    return fired + resolved


def test_a_firing_recommends_the_rules_action_and_its_resolution_lifts_it() -> None:
    firing, resolved = account_transitions()
    fire_msg, lift_msg = action_messages([firing, resolved], load_rules())
    assert fire_msg.key == lift_msg.key == b"org-a"
    body = fire_msg.body
    assert body == {
        "schema": "distillwatch.action.v1", "action": "rate_limit", "recommended": "rate_limit",
        "subject": "account", "account_id": "org-a", "cluster_id": "", "members": [],
        "rule": "extraction_score_high", "severity": "warning", "score": 80.0,
        "reasons": {"distribution_probing": 48.0, "template_sweep": 32.0},
        "issued_at": "1970-01-01T00:01:00.000Z", "expires_at": "1970-01-02T00:01:00.000Z",
        "starts_at": "1970-01-01T00:01:00.000Z",
        "idempotency_key": idempotency_key("extraction_score_high", "org-a", MIN_MS, "rate_limit"),
    }
    lift = lift_msg.body
    assert (lift["action"], lift["recommended"], lift["expires_at"]) == (LIFT, "rate_limit", None)
    assert lift["issued_at"] == "1970-01-01T01:02:00.000Z"  # last true frame ended at 2, plus the quiet hour
    assert lift["idempotency_key"] != body["idempotency_key"]
    # Stable: the same transition (a re-read batch after a restart) gives the same key.
    assert action_messages([firing], load_rules())[0].body["idempotency_key"] == body["idempotency_key"]


def test_cluster_alerts_make_one_message_per_campaign_with_its_members() -> None:
    rules = load_rules()
    record = {"alertname": "cluster_extraction", "severity": "critical", "cluster_id": "c-1", "model": "",
              "action": "takedown", "mode": "page"}
    members = [AlertTransition("cluster_extraction", "firing", {**record, "account_id": m}, {}, 5 * MIN_MS + i,
                               None, 88.0, {"size": 20.0, "pay:x": 1.0}) for i, m in enumerate(["m2", "m1", "m3"])]
    [msg] = action_messages(members, rules)
    body = msg.body
    assert msg.key == b"c-1"
    assert (body["subject"], body["action"], body["cluster_id"], body["members"], body["account_id"]) == \
        ("cluster", "takedown", "c-1", ["m1", "m2", "m3"], None)
    assert body["idempotency_key"] == idempotency_key("cluster_extraction", "c-1", 5 * MIN_MS, "takedown")


# --- the detect step --------------------------------------------------------------------------------

class FakeActions:
    def __init__(self, effects: Effects) -> None:
        self.effects = effects

    async def publish(self, messages: Sequence[ActionMessage]) -> None:
        if messages:
            self.effects.append(("actions", [m.body for m in messages]))


def step_with(effects: Effects, rules: Path | None = None) -> DetectStep:
    settings = load_settings(checkpoint_interval_s=0, alert_rules=rules)
    state = StateManager(make_detector=lambda: Detector(settings, 2), topic=FakeStateTopic(effects),  # type: ignore[arg-type]
                         events_topic="e", bootstrap_servers=["unused:1"], dedup_window=1000,
                         decode=lambda *a: None)  # type: ignore[arg-type,return-value]
    return DetectStep(settings, state, FakeWriter(effects), FakeDeadLetters(effects), PipelineStats(),  # type: ignore[arg-type]
                      on_drained=lambda: None, actions=FakeActions(effects))  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pipeline.retry.RETRY_BACKOFF_S", (0.0,))


def test_actions_are_published_after_the_alert_rows_and_before_the_checkpoint_and_commit() -> None:
    effects = Effects()
    asyncio.run(step_with(effects).handle(make_batch(effects, harvest(), drain=True)))
    kinds = effects.kinds()
    alerts_at = next(i for i, (k, v) in enumerate(effects) if k == "clickhouse" and v[0] == "alerts")
    assert kinds.index("actions") > alerts_at
    assert kinds[kinds.index("actions") + 1:] == ["checkpoint", "commit"]
    [body] = effects[kinds.index("actions")][1]
    assert (body["account_id"], body["action"], body["rule"]) == ("org-x", "rate_limit", "extraction_score_high")
    assert body["reasons"] and body["score"] >= 70


def test_monitor_mode_records_the_alert_and_publishes_nothing(tmp_path: Path) -> None:
    doc = rules_doc()
    doc["rules"][0]["mode"] = "monitor"
    effects = Effects()
    step = step_with(effects, write_yaml(tmp_path / "rules.yaml", doc))
    asyncio.run(step.handle(make_batch(effects, harvest(), drain=True)))
    [alerts] = [cols for k, (t, cols) in ((k, v) for k, v in effects if k == "clickhouse") if t == "alerts"]
    assert alerts["mode"] == ["monitor"] and alerts["account_id"] == ["org-x"]
    assert "actions" not in effects.kinds()


# --- the publisher against the test broker -----------------------------------------------------------

def consume(bootstrap: str, topic: str, expected: int) -> list[tuple[bytes, dict[str, Any]]]:
    async def read() -> list[tuple[bytes, dict[str, Any]]]:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                    group_id=f"t-{uuid.uuid4().hex[:6]}", enable_auto_commit=False)
        await consumer.start()
        out: list[tuple[bytes, dict[str, Any]]] = []
        deadline = time.monotonic() + 120  # generous: a loaded 2-core machine
        try:
            while len(out) < expected:
                assert time.monotonic() < deadline, f"only {len(out)} of {expected} messages arrived"
                fetched = await asyncio.wait_for(consumer.getmany(timeout_ms=1000), 60)
                for messages in fetched.values():
                    out += [(m.key, orjson.loads(m.value)) for m in messages]
        finally:
            await consumer.stop()
        return out

    return asyncio.run(read())


@pytest.mark.kafka
def test_the_publisher_delivers_keyed_json_messages(kafka_broker: Any) -> None:
    topic = f"actions-{uuid.uuid4().hex[:8]}"
    create_topics(kafka_broker.bootstrap, [topic], 2)
    messages = action_messages(account_transitions(), load_rules())

    async def publish() -> None:
        publisher = ActionPublisher([kafka_broker.bootstrap], topic)
        await publisher.start()
        try:
            await publisher.publish(messages)
        finally:
            await publisher.stop()
        assert publisher.sent == 2

    asyncio.run(publish())
    got = consume(kafka_broker.bootstrap, topic, 2)
    assert sorted((k, b["action"]) for k, b in got) == [(b"org-a", "lift"), (b"org-a", "rate_limit")]
    assert {b["idempotency_key"] for _, b in got} == {m.body["idempotency_key"] for m in messages}
