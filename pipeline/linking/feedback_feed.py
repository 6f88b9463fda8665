"""``<group>-link-feedback``: analysts' verdicts, from the worker to the linking process.

The linking process cannot read embedded ClickHouse, so the worker publishes the
``alert_feedback`` set it reloads, as one gzipped message, only when the set changed. The topic
is compacted with one partition and one key: its last record is the newest set. Decoding raises
``MessageError``. The wire format: docs/linking.md ("Wire formats").
"""

from __future__ import annotations

import logging
import time
from dataclasses import astuple, fields
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from pipeline.alerting.feedback import VERDICTS, Feedback, FeedbackSuppressions
from pipeline.linking.messages import ENVELOPE_VERSION, MessageError, open_message

log = logging.getLogger(__name__)

FEEDBACK_TYPE = "feedback"
FEEDBACK_KEY = b"feedback"  # the only key: compaction keeps the newest set
MAX_MESSAGE_BYTES = 4 << 20  # before gzip; the broker sees far less
# The linking process asks for a newer set this often (the worker reloads every 30 s).
FEEDBACK_POLL_S = 5.0
# latest(): how long to wait for the partition's last record once its end offset is known.
READ_TIMEOUT_S = 10.0
_FIELDS = tuple(f.name for f in fields(Feedback))
_INT_FIELDS = frozenset({"recorded_at_ms", "suppress_until_ms"})


def encode_feedback(feedback: FeedbackSuppressions) -> bytes:
    """One message holding every entry the set was built from (equal sets encode equally)."""
    return orjson.dumps({"v": ENVELOPE_VERSION, "type": FEEDBACK_TYPE,
                         "entries": [astuple(e) for e in feedback.entries]})


def decode_feedback(value: bytes) -> FeedbackSuppressions:
    body = open_message(value, "feedback message", FEEDBACK_TYPE)
    entries = body.get("entries")
    if not isinstance(entries, list):
        raise MessageError("feedback message: 'entries' missing or not a list")
    return FeedbackSuppressions(_entry(e) for e in entries)


def _entry(raw: Any) -> Feedback:
    if not isinstance(raw, list) or len(raw) != len(_FIELDS):
        raise MessageError(f"feedback entry is not a list of {len(_FIELDS)} fields: {raw!r}")
    for name, v in zip(_FIELDS, raw, strict=True):
        wanted = int if name in _INT_FIELDS else str
        if not isinstance(v, wanted) or isinstance(v, bool):
            raise MessageError(f"feedback entry field {name!r}: {v!r} is not {wanted.__name__}")
    entry = Feedback(*raw)
    if entry.verdict not in VERDICTS:
        raise MessageError(f"feedback entry verdict {entry.verdict!r} is not one of {', '.join(VERDICTS)}")
    return entry


class FeedbackPublisher:
    """The worker's side: ``publish`` sends a set (acked) unless it equals the last one sent."""

    def __init__(self, bootstrap_servers: list[str], topic: str) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.published = 0
        self._last: tuple[Feedback, ...] | None = None  # the entries of the last acknowledged set
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap_servers, client_id="distillwatch-feedback",
                                    acks="all", compression_type="gzip", max_request_size=MAX_MESSAGE_BYTES)
        await producer.start()
        self._producer = producer

    async def stop(self) -> None:
        if self._producer is not None:
            producer, self._producer = self._producer, None
            await producer.stop()

    @property
    def started(self) -> bool:
        return self._producer is not None

    async def publish(self, feedback: FeedbackSuppressions) -> bool:
        """True when sent and acknowledged; False when unchanged. Raises KafkaError (retry next time)."""
        if self._producer is None:
            raise RuntimeError("FeedbackPublisher.publish before start")
        if feedback.entries == self._last:
            return False
        await self._producer.send_and_wait(self.topic, encode_feedback(feedback), key=FEEDBACK_KEY, partition=0)
        self._last = feedback.entries
        self.published += 1
        log.info("published %d alert feedback verdicts to %s", len(feedback), self.topic)
        return True


class FeedbackReader:
    """The linking process's side: ``latest`` reads the partition's last record when it is new.

    No consumer group: it seeks to ``end - 1`` each time the end offset moved, so a call
    with nothing new costs one ListOffsets request.
    """

    def __init__(self, bootstrap_servers: list[str], topic: str, *, read_timeout_s: float = READ_TIMEOUT_S) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.read_timeout_s = read_timeout_s
        self.tp = TopicPartition(topic, 0)
        self.seen_end = 0  # end offset at the last record read
        self._last_value: bytes | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def stop(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()

    async def latest(self) -> FeedbackSuppressions | None:
        """The newest published set if it differs from the one returned last time, else None.

        Kafka errors and a malformed record are logged and give None (the caller keeps its set).
        """
        try:
            value = await self._read_new()
        except KafkaError as exc:
            log.warning("could not read alert feedback from %s: %s", self.topic, exc)
            return None
        if value is None or value == self._last_value:
            return None
        try:
            found = decode_feedback(value)
        except MessageError as exc:
            log.error("ignored a malformed alert feedback message: %s", exc)
            return None
        self._last_value = value
        return found

    async def _read_new(self) -> bytes | None:
        consumer = await self._started()
        end = (await consumer.end_offsets([self.tp]))[self.tp]
        if end == 0 or end == self.seen_end:  # (a smaller end: the topic was re-created)
            return None
        consumer.seek(self.tp, end - 1)
        value: bytes | None = None
        deadline = time.monotonic() + self.read_timeout_s
        try:
            while time.monotonic() < deadline:
                fetched = await consumer.getmany(self.tp, timeout_ms=500)
                for record in fetched.get(self.tp, []):
                    if record.value is not None:
                        value = record.value
                if await consumer.position(self.tp) >= end:
                    self.seen_end = end
                    return value
        finally:
            consumer.pause(self.tp)  # nothing to prefetch until the next call
        log.warning("alert feedback: offset %d of %s did not arrive within %.0fs", end - 1, self.topic,
                    self.read_timeout_s)
        return None

    async def _started(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap_servers, client_id="distillwatch-feedback",
                                        group_id=None, enable_auto_commit=False,
                                        max_partition_fetch_bytes=MAX_MESSAGE_BYTES)
            await consumer.start()
            consumer.assign([self.tp])
            self._consumer = consumer
        consumer = self._consumer
        consumer.resume(self.tp)
        return consumer

