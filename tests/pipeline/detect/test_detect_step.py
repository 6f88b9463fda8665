"""DetectStep: the commit order (dead letters → ClickHouse → checkpoint → commit), retries, checkpoint timing.

The fakes (``tests.support.detect_step``) record every external effect in one list: the tests read the order.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import orjson
import pytest

from pipeline.detect import step as detect
from tests.support.detect_step import Effects, event, make_batch, make_step
from tests.support.events import MINIMAL


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pipeline.retry.RETRY_BACKOFF_S", (0.0,))


def test_dead_letters_then_clickhouse_then_checkpoint_then_commit() -> None:
    effects = Effects()
    step = make_step(effects)
    asyncio.run(step.handle(make_batch(effects, [event(0), b"not json", event(1)])))
    kinds = effects.kinds()
    assert kinds[0] == "dead_letters" and effects[0][1] == [b"not json"]
    assert kinds[-2:] == ["checkpoint", "commit"]
    assert set(kinds[1:-2]) == {"clickhouse"}
    assert effects[-1][1] == {0: 3}
    entity_keys, markers = effects[-2][1]
    assert b"account/0/0" in entity_keys and markers == [b"__partition__/0"]  # block 0 of partition 0
    assert step.stats.batches_committed == 1


def test_clickhouse_down_holds_the_batch_and_commits_only_after_it_is_written() -> None:
    effects = Effects()
    step = make_step(effects, ch_failures=3)
    asyncio.run(step.handle(make_batch(effects, [event(0), event(1)])))
    assert step.stats.clickhouse_retries == 3 and step.stats.clickhouse_available
    assert effects.kinds()[-2:] == ["checkpoint", "commit"]
    assert "api_calls" in [t for k, (t, _) in ((k, v) for k, v in effects if k == "clickhouse")]


def test_checkpoint_failures_are_retried_before_any_commit() -> None:
    effects = Effects()
    step = make_step(effects, state_failures=2)
    asyncio.run(step.handle(make_batch(effects, [event(0)])))
    assert effects.kinds()[-2:] == ["checkpoint", "commit"]
    assert step.stats.checkpoint_retries == 2


def test_with_an_interval_commits_wait_for_it_a_revocation_or_the_end_of_input() -> None:
    effects = Effects()
    step = make_step(effects, interval=300)

    step.state.owned = {0}

    async def scenario() -> None:
        step._last_checkpoint -= 10  # not due yet: the interval is five minutes
        await step.handle(make_batch(effects, [event(0)], 0))
        await step.handle(make_batch(effects, [event(1)], 1))
        await step.flush_if_due()
        assert "commit" not in effects.kinds()
        await step.begin_revoke()  # partitions are going: commit now, and every later batch at once
        assert effects.kinds()[-3:] == ["checkpoint", "commit", "commit"]
        assert [v for k, v in effects if k == "commit"] == [{0: 1}, {0: 2}]
        await step.handle(make_batch(effects, [event(2)], 2))
        assert effects.kinds()[-2:] == ["checkpoint", "commit"]
        assert await step.assign({0}, {0: 3}) == {0: 3}  # kept in memory; the new assignment ends the hurry
        await step.handle(make_batch(effects, [event(3)], 3))
        assert effects.kinds()[-1] == "clickhouse"
        await step.handle(make_batch(effects, [], drain=True))
        assert effects.kinds()[-4:] == ["checkpoint", "commit", "commit", "drained"]
        assert effects[-3][1] == {0: 4} and effects[-2][1] == {}  # the drain batch has no offsets

    asyncio.run(scenario())
    assert step.stats.drained


def test_a_batch_waiting_for_its_commit_no_longer_holds_its_raw_messages() -> None:
    effects = Effects()
    step = make_step(effects, interval=300)
    batch = make_batch(effects, [event(0), b"not json", event(0)])
    asyncio.run(step.handle(batch))
    assert "commit" not in effects.kinds()  # written, waiting for the checkpoint interval
    assert batch.values == [] and batch.keys == []
    assert len(batch) == 3 and step.stats.events_in == 3
    assert effects[0] == ("dead_letters", [b"not json"])  # the rejects keep their own copies
    writes = {t: cols for k, (t, cols) in ((k, v) for k, v in effects if k == "clickhouse")}
    rejected = writes["rejected_events"]
    assert rejected["reason"] == ["invalid_json", "duplicate"] and rejected["sample"][1] == event(0).decode()


def test_a_resent_event_is_recorded_as_duplicate_not_dead_lettered_and_not_counted() -> None:
    effects = Effects()
    step = make_step(effects)
    asyncio.run(step.handle(make_batch(effects, [event(0), event(1), event(0)])))
    assert "dead_letters" not in effects.kinds()
    writes = {t: cols for k, (t, cols) in ((k, v) for k, v in effects if k == "clickhouse")}
    assert writes["api_calls"]["event_id"] == ["e0", "e1"]
    assert writes["rejected_events"]["reason"] == ["duplicate"]
    assert list(writes["rejected_events"]["kafka_offset"]) == [2]
    assert step.stats.events_duplicate == 1 and step.stats.events_valid == 2


def test_a_decoder_that_raises_costs_only_the_message_it_raised_on(monkeypatch: pytest.MonkeyPatch) -> None:
    real = detect.decode_any_batch

    def fragile(values: Sequence[bytes], *args: Any, **kwargs: Any) -> Any:
        if any(b"boom" in v for v in values):
            raise RecursionError("decoder bug")
        return real(values, *args, **kwargs)

    monkeypatch.setattr(detect, "decode_any_batch", fragile)
    effects = Effects()
    step = make_step(effects)
    poison = orjson.dumps({**MINIMAL, "event_id": "boom"})
    asyncio.run(step.handle(make_batch(effects, [event(0), poison, event(1)])))
    assert effects[0] == ("dead_letters", [poison])
    writes = {t: cols for k, (t, cols) in ((k, v) for k, v in effects if k == "clickhouse")}
    assert writes["rejected_events"]["reason"] == ["decoder_error"]
    assert "RecursionError" in writes["rejected_events"]["detail"][0]
    assert writes["api_calls"]["event_id"] == ["e0", "e1"]
    assert effects.kinds()[-1] == "commit"
