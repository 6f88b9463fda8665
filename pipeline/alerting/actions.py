"""Recommended actions for the gateway: one JSON message per action on ``DW_TOPIC_ACTIONS``.

Messages (schema ``distillwatch.action.v1``) come from page alert transitions only: a firing
recommends its rule's action, a resolution publishes ``"action": "lift"`` for the same subject.
Kafka key: the account (account rules) or the cluster (cluster rules, one message per rule,
cluster and transition kind of a batch). ``idempotency_key`` hashes (rule, subject, starts_at,
action or lift), so a recommendation re-published after a restart carries the same key.
The contract, field by field: docs/alerting.md ("Recommended actions").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import orjson
from aiokafka import AIOKafkaProducer

from pipeline.alerting.rules import ACCOUNT, CLUSTER, RuleSet
from pipeline.alerting.transitions import FIRING, AlertTransition
from pipeline.hashing import stable_id

SCHEMA: Final = "distillwatch.action.v1"
LIFT: Final = "lift"


@dataclass(frozen=True)
class ActionMessage:
    key: bytes
    value: bytes

    @property
    def body(self) -> dict[str, object]:
        return orjson.loads(self.value)  # type: ignore[no-any-return]


def iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def idempotency_key(rule: str, subject: str, starts_at_ms: int, action: str) -> str:
    return stable_id(rule, subject, starts_at_ms, action, size=16)


def action_messages(transitions: Iterable[AlertTransition], rules: RuleSet) -> list[ActionMessage]:
    """The messages for a batch's page transitions, in order (accounts first, then clusters)."""
    subjects = {r.name: r.rule for r in rules.rules}
    out: list[ActionMessage] = []
    campaigns: dict[tuple[str, str, str], list[AlertTransition]] = {}
    for t in transitions:
        rule = subjects.get(t.rule)
        if t.labels.get("mode") != "page":
            continue  # never happens for engine output; a guard for hand-made transitions
        if rule is not None and rule.subject == CLUSTER and t.labels.get("cluster_id"):
            campaigns.setdefault((t.rule, t.labels["cluster_id"], t.state), []).append(t)
            continue
        expires = rule.action_expires_ms if rule is not None else 0
        out.append(_message(t.labels["account_id"].encode(), [t], ACCOUNT, expires))
    for (_, cluster, _), group in campaigns.items():
        rule = subjects[group[0].rule]
        out.append(_message(cluster.encode(), group, CLUSTER, rule.action_expires_ms))
    return out


def _message(key: bytes, group: Sequence[AlertTransition], subject: str, expires_ms: int) -> ActionMessage:
    first = min(group, key=lambda t: t.starts_at_ms)
    labels = first.labels
    firing = first.state == FIRING
    issued = first.starts_at_ms if firing else max(int(t.ends_at_ms or t.starts_at_ms) for t in group)
    action = labels["action"] if firing else LIFT
    subject_id = labels["account_id"] if subject == ACCOUNT else labels["cluster_id"]
    reasons: dict[str, float] = {}
    for t in group:
        for name, points in t.signals.items():
            reasons.setdefault(name, float(points))
    body = {
        "schema": SCHEMA, "action": action, "recommended": labels["action"], "subject": subject,
        "account_id": labels["account_id"] if subject == ACCOUNT else None,
        "cluster_id": labels.get("cluster_id", ""),
        "members": sorted(t.labels["account_id"] for t in group) if subject == CLUSTER else [],
        "rule": first.rule, "severity": labels.get("severity", ""), "score": round(max(t.score for t in group), 2),
        "reasons": reasons, "issued_at": iso_ms(issued),
        "expires_at": iso_ms(issued + expires_ms) if firing and expires_ms else None,
        "starts_at": iso_ms(first.starts_at_ms),
        "idempotency_key": idempotency_key(first.rule, subject_id, first.starts_at_ms, action),
    }
    return ActionMessage(key, orjson.dumps(body))


class ActionPublisher:
    """Produces action messages with its own aiokafka producer (acks=all), like the linking producer.

    ``publish`` returns once Kafka acknowledged every message (raises KafkaError otherwise: the
    caller retries, and the idempotency key lets the gateway drop a repeat).
    """

    def __init__(self, bootstrap_servers: list[str], topic: str) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.sent = 0
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        self._producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap_servers, client_id="distillwatch-actions",
                                          acks="all", linger_ms=5)
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def publish(self, messages: Sequence[ActionMessage]) -> None:
        if not messages:
            return
        if self._producer is None:
            raise RuntimeError("ActionPublisher.publish before start")
        futures = [await self._producer.send(self.topic, m.value, key=m.key) for m in messages]
        for f in futures:
            await f
        self.sent += len(messages)
