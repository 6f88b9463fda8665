"""The linking topics of a group, and how ensure_topics creates them (state and feedback compacted)."""

from __future__ import annotations

from typing import Any

import pytest
from kafka.admin import NewTopic

from pipeline import topics as topics_module
from pipeline.linking.topics import LinkTopics
from pipeline.settings import load_settings
from pipeline.topics import STATE_TOPIC_CONFIG, ensure_topics


class FakeAdmin:
    def __init__(self) -> None:
        self.created: dict[str, NewTopic] = {}

    def list_topics(self) -> list[str]:
        return list(self.created)

    def create_topics(self, new: list[NewTopic]) -> None:
        self.created.update({t.name: t for t in new})

    def describe_topics(self, names: list[str]) -> list[dict[str, Any]]:
        return [{"partitions": [{}] * self.created[n].num_partitions} for n in names]

    def close(self) -> None:
        pass


def test_every_group_has_its_five_linking_topics_and_only_state_and_feedback_are_compacted(
        monkeypatch: pytest.MonkeyPatch) -> None:
    t = LinkTopics.for_group("replay-7")
    assert t == LinkTopics("replay-7-link-observations", "replay-7-link-edges", "replay-7-link-results",
                           "replay-7-link-state", "replay-7-link-feedback")
    assert t.partitions(8) == {t.observations: 8, t.edges: 1, t.results: 1, t.state: 1, t.feedback: 1}
    admin = FakeAdmin()
    monkeypatch.setattr(topics_module, "admin_client", lambda *a, **k: admin)
    ensure_topics(load_settings(consumer_group="replay-7"), extra=t.partitions(8))
    configs = {name: topic.topic_configs for name, topic in admin.created.items()}
    assert configs[t.state] == configs[t.feedback] == STATE_TOPIC_CONFIG
    assert configs[t.observations] == configs[t.edges] == configs[t.results] == {}
    assert admin.created[t.observations].num_partitions == 8
