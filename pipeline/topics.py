"""Create the topics distillwatch reads and writes (idempotent), with kafka-python's admin."""

from __future__ import annotations

import time

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

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


def ensure_topics(settings: Settings, extra: dict[str, int] | None = None) -> list[str]:
    """Create missing topics; returns the names created now. Existing ones are left alone."""
    wanted = {settings.topic_events: settings.partitions, settings.topic_dlq: settings.partitions}
    wanted.update(extra or {})
    admin = admin_client(settings.kafka_bootstrap)
    try:
        existing = set(admin.list_topics())
        created: list[str] = []
        for name, partitions in wanted.items():
            if name in existing:
                continue
            try:
                admin.create_topics([NewTopic(name, partitions, settings.replication_factor)])
                created.append(name)
            except TopicAlreadyExistsError:
                pass
            except KafkaError as exc:
                raise KafkaUnavailable(f"could not create topic {name!r}: {exc}") from exc
        return created
    finally:
        admin.close()


def partition_count(settings: Settings, topic: str) -> int:
    admin = admin_client(settings.kafka_bootstrap)
    try:
        meta = admin.describe_topics([topic])
        return len(meta[0]["partitions"])
    finally:
        admin.close()
