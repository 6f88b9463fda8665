"""DetectStep hands a batch's alert transitions to the outbox after its ClickHouse writes, before the commit."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence

import pytest

from pipeline.alerting.transitions import AlertTransition
from pipeline.detect.step import Detected, DetectStep
from pipeline.sinks.clickhouse import ClickHouseUnavailable
from pipeline.sources.fetched_batch import FetchedBatch
from tests.support.detect_step import Effects, event, make_batch, make_step
from tests.support.transitions import transition


class FakeOutbox:
    def __init__(self, effects: Effects, failures: int = 0) -> None:
        self.effects = effects
        self.failures = failures

    def add(self, transitions: Sequence[AlertTransition]) -> int:
        if self.failures:
            self.failures -= 1
            raise ClickHouseUnavailable("connection refused", table="alert_notifications")
        self.effects.append(("outbox", [t.labels["account_id"] for t in transitions]))
        return len(transitions)


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pipeline.retry.RETRY_BACKOFF_S", (0.0,))


def step_with_outbox(effects: Effects, outbox: FakeOutbox, found: list[AlertTransition]) -> DetectStep:
    step = make_step(effects)
    step.outbox = outbox  # type: ignore[assignment]
    detect_batch = step.detect

    def detect_with_transitions(batch: FetchedBatch) -> Detected:
        done = detect_batch(batch)
        return dataclasses.replace(done, output=dataclasses.replace(done.output, transitions=found))

    step.detect = detect_with_transitions  # type: ignore[method-assign]
    return step


def test_transitions_go_to_the_outbox_after_clickhouse_and_before_the_commit() -> None:
    effects = Effects()
    step = step_with_outbox(effects, FakeOutbox(effects), [transition("org-1"), transition("org-2")])
    asyncio.run(step.handle(make_batch(effects, [event(0), event(1)])))
    kinds = effects.kinds()
    assert kinds.count("outbox") == 1
    at = kinds.index("outbox")
    assert set(kinds[:at]) == {"clickhouse"}
    assert kinds[at + 1:] == ["checkpoint", "commit"]
    assert effects[at][1] == ["org-1", "org-2"]


def test_outbox_unavailable_holds_the_commit_until_stored() -> None:
    effects = Effects()
    step = step_with_outbox(effects, FakeOutbox(effects, failures=2), [transition("org-1")])
    asyncio.run(step.handle(make_batch(effects, [event(0)])))
    assert effects.kinds()[-3:] == ["outbox", "checkpoint", "commit"]


def test_a_batch_without_transitions_does_not_touch_the_outbox() -> None:
    effects = Effects()
    step = step_with_outbox(effects, FakeOutbox(effects), [])
    asyncio.run(step.handle(make_batch(effects, [event(0)])))
    assert "outbox" not in effects.kinds()
