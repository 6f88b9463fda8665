"""Create the topics distillwatch reads and writes (idempotent), with kafka-python's admin."""

from __future__ import annotations

import time

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from pipeline.linking.topics import LinkTopics
from pipeline.settings import Settings


class KafkaUnavailable(RuntimeError):
    pass


def admin_client(bootstrap: str, timeout_s: float = 15.0) -> KafkaAdminClient:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return KafkaAdminClient(bootstrap_servers=bootstrap.split(","), client_id="distillwatch-admin",
                                    request_timeout_ms=10_000)
        except KafkaError:
            if time.monotonic() > deadline:
                raise KafkaUnavailable(
                    f"no Kafka broker answers at {bootstrap} (DW_KAFKA_BOOTSTRAP)"
                ) from None
            time.sleep(0.25)


# The state topic keeps the latest checkpoint record per key. Compaction waits an
# hour before it may clean a record, so that a record of an unfinished checkpoint
# (a worker died between its records and its marker) cannot make the entity's
# older, valid record disappear before a restarted worker rewrites it
# (pipeline/state/checkpoint.py).
STATE_TOPIC_CONFIG = {"cleanup.policy": "compact", "min.compaction.lag.ms": str(3_600_000)}


class StateTopicMismatch(RuntimeError):
    pass


def ensure_topics(settings: Settings, extra: dict[str, int] | None = None) -> list[str]:
    """Create missing topics; returns the names created now. Existing ones are left alone.

    The state topic gets as many partitions as the events topic has (state
    partition p holds the state of input partition p); raises StateTopicMismatch
    when an existing state topic has fewer.
    """
    wanted = {settings.topic_events: settings.partitions, settings.topic_dlq: settings.partitions,
              settings.topic_actions: settings.partitions}  # recommended actions for the gateway
    wanted.update(extra or {})
    admin = admin_client(settings.kafka_bootstrap)
    try:
        existing = set(admin.list_topics())
        # The linking process's checkpoint and feedback topics (pipeline/linking/topics.py) are compacted the same way.
        compacted = LinkTopics.for_group(settings.consumer_group).compacted
        created = [name for name, partitions in wanted.items()
                   if name not in existing and _create(admin, settings, name, partitions,
                                                       STATE_TOPIC_CONFIG if name in compacted else None)]
        n_events = (wanted[settings.topic_events] if settings.topic_events in created
                    else _partitions(admin, settings.topic_events))
        state = settings.state_topic
        if state not in existing:
            if _create(admin, settings, state, n_events, STATE_TOPIC_CONFIG):
                created.append(state)
        elif (n_state := _partitions(admin, state)) < n_events:
            raise StateTopicMismatch(
                f"state topic {state!r} has {n_state} partitions but {settings.topic_events!r} has {n_events}: "
                f"add partitions to {state!r} (kafka-topics --alter --partitions {n_events}) before starting")
        return created
    finally:
        admin.close()


def _create(admin: KafkaAdminClient, settings: Settings, name: str, partitions: int,
            config: dict[str, str] | None = None) -> bool:
    try:
        admin.create_topics([NewTopic(name, partitions, settings.replication_factor, topic_configs=config or {})])
    except TopicAlreadyExistsError:
        return False
    except KafkaError as exc:
        raise KafkaUnavailable(f"could not create topic {name!r}: {exc}") from exc
    return True


def _partitions(admin: KafkaAdminClient, topic: str) -> int:
    return len(admin.describe_topics([topic])[0]["partitions"])


def partition_count(settings: Settings, topic: str) -> int:
    admin = admin_client(settings.kafka_bootstrap)
    try:
        return _partitions(admin, topic)
    finally:
        admin.close()

