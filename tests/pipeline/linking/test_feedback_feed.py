"""The analysts' verdicts from the worker to the linking process: the message, and the feed on a broker."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import orjson
import pytest
from aiokafka.errors import KafkaConnectionError
from kafka.admin import KafkaAdminClient, NewTopic

from jobs.embedded_broker import EmbeddedBroker
from pipeline.alerting.feedback import FeedbackSuppressions
from pipeline.app import Pipeline
from pipeline.linking.feedback_feed import FeedbackPublisher, FeedbackReader, decode_feedback, encode_feedback
from pipeline.linking.messages import MessageError
from pipeline.topics import STATE_TOPIC_CONFIG
from tests.support.feedback import DAY, T0, fb

TOPIC = "t-link-feedback"
WAIT_S = 60.0


def verdicts() -> FeedbackSuppressions:
    return FeedbackSuppressions([
        fb("org-2", "confirmed", at=T0 + 10),
        fb("org-1", "false_positive", rule="score_high", days=2),
        fb("org-1", "ack", at=T0 + 5),  # changes nothing: not kept, not sent
        fb("org-3", "false_positive", at=T0 + 20),
        fb("org-3", "confirmed", rule="r1", at=T0 + 30),
    ])


def test_a_set_round_trips_with_its_entries_and_lookups() -> None:
    s = verdicts()
    back = decode_feedback(encode_feedback(s))
    assert back.entries == s.entries and len(back) == 4
    assert back.lookup("score_high", "org-1", T0 + DAY) == s.lookup("score_high", "org-1", T0 + DAY) is not None
    assert back.lookup("r1", "org-3", T0 + 40) is None and back.lookup("r2", "org-3", T0 + 40) is not None
    assert back.confirmed_accounts == {"org-2", "org-3"} and back.false_positive_accounts == {"org-1"}
    assert encode_feedback(FeedbackSuppressions(reversed(verdicts().entries))) == encode_feedback(s)
    assert decode_feedback(encode_feedback(FeedbackSuppressions())).entries == ()


@pytest.mark.parametrize("value", [
    b"{",
    orjson.dumps({"v": 1, "type": "result", "entries": []}),
    orjson.dumps({"v": 99, "type": "feedback", "entries": []}),
    orjson.dumps({"v": 1, "type": "feedback"}),
    orjson.dumps({"v": 1, "type": "feedback", "entries": [["too", "short"]]}),
    orjson.dumps({"v": 1, "type": "feedback", "entries": [["id", "late", "org-1", "", "false_positive", "r",
                                                             "a", 0]]}),
    orjson.dumps({"v": 1, "type": "feedback", "entries": [["id", 1, "org-1", "", "benign", "r", "a", 0]]}),
])
def test_a_malformed_message_is_refused(value: bytes) -> None:
    with pytest.raises(MessageError):
        decode_feedback(value)


class FlakyProducer:
    """Refuses the first send the way Kafka does, then records."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.failures = 1

    async def send_and_wait(self, topic: str, value: bytes, *, key: bytes, partition: int) -> None:
        if self.failures:
            self.failures -= 1
            raise KafkaConnectionError("broker away")
        self.sent.append(value)


def test_the_worker_retries_a_failed_publish_after_its_next_reload(caplog: pytest.LogCaptureFixture) -> None:
    publisher, producer = FeedbackPublisher(["127.0.0.1:9"], TOPIC), FlakyProducer()
    publisher._producer = producer  # type: ignore[assignment]
    worker = SimpleNamespace(feedback_feed=publisher, loaded_feedback=None)

    async def reloads() -> None:
        await Pipeline.publish_feedback(worker)  # type: ignore[arg-type]  # nothing loaded yet: nothing sent
        worker.loaded_feedback = verdicts()
        await Pipeline.publish_feedback(worker)  # type: ignore[arg-type]  # refused: logged
        await Pipeline.publish_feedback(worker)  # type: ignore[arg-type]  # the same set: sent now
        await Pipeline.publish_feedback(worker)  # type: ignore[arg-type]  # unchanged: not again

    asyncio.run(reloads())
    assert producer.sent == [encode_feedback(verdicts())]
    assert "could not publish alert feedback" in caplog.text


async def feed(bootstrap: str) -> None:
    first = verdicts()
    publisher, reader = FeedbackPublisher([bootstrap], TOPIC), FeedbackReader([bootstrap], TOPIC)
    await publisher.start()
    try:
        assert await reader.latest() is None  # nothing published yet
        assert await publisher.publish(first)
        seen = await reader.latest()
        assert seen is not None and seen.entries == first.entries
        assert await reader.latest() is None  # nothing newer
        assert not await publisher.publish(FeedbackSuppressions(first.entries))  # unchanged: not sent
        # Another worker (or this one restarted) sends the same set: a new record, but not a newer set.
        other = FeedbackPublisher([bootstrap], TOPIC)
        await other.start()
        try:
            assert await other.publish(first)
        finally:
            await other.stop()
        assert await reader.latest() is None and reader.seen_end == 2
        second = FeedbackSuppressions([*first.entries, fb("org-4", "false_positive", at=T0 + 50)])
        assert await publisher.publish(second) and publisher.published == 2
        seen = await reader.latest()
        assert seen is not None and seen.lookup("any", "org-4", T0 + 60) is not None
        # A reader started later (a restarted linking process) gets the newest set at once.
        late = FeedbackReader([bootstrap], TOPIC)
        try:
            seen = await late.latest()
            assert seen is not None and seen.entries == second.entries
        finally:
            await late.stop()
    finally:
        await reader.stop()
        await publisher.stop()


@pytest.mark.slow
@pytest.mark.kafka
def test_the_reader_sees_each_newer_set_the_worker_publishes(tmp_path: Path) -> None:
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as broker:
        admin = KafkaAdminClient(bootstrap_servers=[broker.bootstrap])
        admin.create_topics([NewTopic(TOPIC, 1, 1, topic_configs=STATE_TOPIC_CONFIG)])
        admin.close()
        asyncio.run(asyncio.wait_for(feed(broker.bootstrap), WAIT_S))


def test_a_reload_before_the_feed_started_sends_nothing_and_does_not_fail() -> None:
    # A first start compiling kernels can take longer than the reload interval.
    publisher = FeedbackPublisher(["127.0.0.1:9"], TOPIC)
    worker = SimpleNamespace(feedback_feed=publisher, loaded_feedback=verdicts())
    asyncio.run(Pipeline.publish_feedback(worker))  # type: ignore[arg-type]
    assert not publisher.started
    publisher._producer = producer = FlakyProducer()  # type: ignore[assignment]
    assert publisher.started
    asyncio.run(Pipeline.publish_feedback(worker))  # type: ignore[arg-type]  # refused by the flaky producer
    asyncio.run(Pipeline.publish_feedback(worker))  # type: ignore[arg-type]
    assert producer.sent == [encode_feedback(verdicts())]
