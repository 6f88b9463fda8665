"""DetectStep with ``overlap_writes``: batch N is written while N+1 is detected, and the commit order still holds."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from typing import Any

import orjson
import pytest

from pipeline.detect.step import DetectStep
from pipeline.sinks.clickhouse import ClickHouseRejected
from tests.support.detect_step import Effects, FakeWriter, event, make_batch, make_step

WAIT_S = 60.0  # generous: the machine is shared


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pipeline.retry.RETRY_BACKOFF_S", (0.0,))


# 300: checkpoints only at the end of input or a revocation; 0: one due after every batch.
INTERVALS = pytest.mark.parametrize("interval", [300.0, 0.0])


def overlapped(effects: Effects, writer: FakeWriter | None = None, interval: float = 300.0) -> DetectStep:
    step = make_step(effects, interval=interval)
    step.overlap_writes = True
    if writer is not None:
        step.writer = writer  # type: ignore[assignment]
    step._last_checkpoint -= 10
    return step


class HeldWriter(FakeWriter):
    """Batch 0's raw rows are written only once batch 1's detection has begun (else the test fails)."""

    def __init__(self, effects: Effects, detecting_next: threading.Event) -> None:
        super().__init__(effects)
        self.detecting_next = detecting_next

    def write(self, table: str, columns: Mapping[str, Any], dedup_token: str | None = None) -> int:
        if dedup_token == "raw:0:0-0" and not self.detecting_next.wait(WAIT_S):
            raise AssertionError("batch 1 was not detected while batch 0 was being written")
        return super().write(table, columns, dedup_token)


def raw_rows(effects: Effects) -> list[list[str]]:
    return [cols["event_id"] for k, (t, cols) in ((k, v) for k, v in effects if k == "clickhouse") if t == "api_calls"]


@INTERVALS
def test_batch_n_is_written_while_n_plus_1_is_detected_and_commits_stay_in_order(interval: float) -> None:
    effects = Effects()
    detecting_next = threading.Event()
    step = overlapped(effects, HeldWriter(effects, detecting_next), interval)
    real_detect = step.detect

    def detect_batch(batch: Any) -> Any:
        if batch.offsets[:1] == [1]:
            detecting_next.set()
        return real_detect(batch)

    step.detect = detect_batch  # type: ignore[method-assign]

    async def scenario() -> None:
        await step.handle(make_batch(effects, [event(0)], 0))
        await step.handle(make_batch(effects, [event(1)], 1))
        await step.handle(make_batch(effects, [event(2)], 2))
        if interval:
            assert "commit" not in effects.kinds()
        await step.handle(make_batch(effects, [], drain=True))

    asyncio.run(scenario())
    kinds = effects.kinds()
    assert [v for k, v in effects if k == "commit"] == [{0: 1}, {0: 2}, {0: 3}, {}]
    assert raw_rows(effects) == [["e0"], ["e1"], ["e2"]]
    if interval:
        assert kinds[-6:] == ["checkpoint", "commit", "commit", "commit", "commit", "drained"]
        assert set(kinds[:kinds.index("checkpoint")]) == {"clickhouse"}
    else:  # each batch's rows, then its checkpoint, then its commit: never a commit ahead of its rows
        commits = [i for i, (k, v) in enumerate(effects) if k == "commit"]
        written = [i for i, (k, v) in enumerate(effects) if k == "clickhouse" and v[0] == "api_calls"]
        assert all(w < c and kinds[c - 1] == "checkpoint" for w, c in zip(written, commits, strict=False))
        assert kinds[-1] == "drained"


class FailingWriter(FakeWriter):
    """Rejects batch 1's raw rows (not retryable)."""

    def write(self, table: str, columns: Mapping[str, Any], dedup_token: str | None = None) -> int:
        if dedup_token == "raw:0:1-1":
            raise ClickHouseRejected("type mismatch", table=table)
        return super().write(table, columns, dedup_token)


@INTERVALS
def test_a_failed_insert_of_batch_n_prevents_the_commit_of_n_and_of_n_plus_1(interval: float) -> None:
    effects = Effects()
    step = overlapped(effects, FailingWriter(effects), interval)

    async def scenario() -> None:
        await step.handle(make_batch(effects, [event(0)], 0))
        await step.handle(make_batch(effects, [event(1)], 1))  # returns: batch 1 is written behind
        with pytest.raises(ClickHouseRejected):
            await step.handle(make_batch(effects, [event(2)], 2))  # learns of batch 1's failure
        with pytest.raises(ClickHouseRejected):
            await step.begin_revoke()
        with pytest.raises(ClickHouseRejected):
            await step.handle(make_batch(effects, [], drain=True))

    asyncio.run(scenario())
    committed = [{0: 1}] if not interval else []  # batch 0, when a checkpoint was due after it
    assert [v for k, v in effects if k == "commit"] == committed
    assert effects.kinds().count("checkpoint") == len(committed)
    assert raw_rows(effects) == [["e0"]]  # batch 2 was detected, never written
    assert step.stats.batches_committed == len(committed) and not step.stats.drained


def test_without_overlap_a_batch_is_written_before_handle_returns() -> None:
    effects = Effects()
    step = overlapped(effects)
    step.overlap_writes = False
    asyncio.run(step.handle(make_batch(effects, [event(0)], 0)))
    assert effects.kinds()[-1] == "clickhouse" and step.pending_batches == 1


def test_a_batchs_linking_messages_carry_the_state_after_it_even_when_the_next_is_detected_first() -> None:
    """Batch 0's account updates (max scores) are packed with its own detection: written only after batch 1
    was detected, they still carry the scores as of batch 0, so a replay's linking input does not depend on
    how the write of one batch and the detection of the next interleave."""
    from pipeline.linking.config import load_linking_config
    from pipeline.linking.messages import AccountUpdates, decode
    from pipeline.linking.publish import LinkPublisher
    from tests.support.detect_step import MINIMAL, T0, harvest

    effects = Effects()
    detected_next = threading.Event()

    class AfterNextDetected(FakeWriter):
        def write(self, table: str, columns: Mapping[str, Any], dedup_token: str | None = None) -> int:
            if dedup_token == "raw:0:0-599" and not detected_next.wait(WAIT_S):
                raise AssertionError("batch 1 was not detected while batch 0 was being written")
            return super().write(table, columns, dedup_token)

    sent: list[AccountUpdates] = []

    async def send(topic: str, partition: int, value: bytes) -> Any:
        message = decode(value)
        if isinstance(message, AccountUpdates):
            sent.append(message)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    step = overlapped(effects, AfterNextDetected(effects))
    step.linking = LinkPublisher(load_linking_config(), send, observations_topic="o", edges_topic="e", partitions=1)
    real_detect = step.detect
    max_after: list[float] = []

    def detect_batch(batch: Any) -> Any:
        found = real_detect(batch)
        max_after.append(step.detector.max_score.get("org-x", -1.0))
        if batch.offsets[:1] == [600]:
            detected_next.set()
        return found

    step.detect = detect_batch  # type: ignore[method-assign]
    # Ten minutes of plain calls (org-x scores 93 on the first frames it closes), then a harvest (100).
    plain = [orjson.dumps({**MINIMAL, "event_id": f"p{i}", "ts": T0 + i * 400, "account_id": "org-x",
                           "completion_tokens": 300, "prompt_hash": f"{(i + 1) * 0x9E3779B97F4A7C15 % 2**64:016x}"})
             for i in range(600)]
    later = [orjson.dumps({**orjson.loads(x), "ts": orjson.loads(x)["ts"] + 600 * 400}) for x in harvest()]
    events = plain + later

    async def scenario() -> None:
        await step.handle(make_batch(effects, events[:600], 0))
        await step.handle(make_batch(effects, events[600:], 600))
        await step.handle(make_batch(effects, [], drain=True))

    asyncio.run(scenario())
    assert max_after[0] != max_after[1]  # batch 1 moved the account's max score: the test can tell them apart
    first = sent[0]
    assert first.max_score[first.account.index("org-x")] == pytest.approx(max_after[0], abs=1e-3)
