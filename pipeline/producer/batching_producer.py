"""BatchingProducer: what a gateway embeds to send events as DWB1 batch containers.

``send(event)`` validates the event at once (``InvalidEventError`` names the field) and buffers it for
its account's partition (Kafka's default murmur2 partitioner, so an account's events stay in one
partition and in send order). Memory is bounded (``max_buffered_events``; ``send`` blocks, then raises
``KafkaTimeoutError``); delivery errors surface as ``DeliveryError`` (how many events were lost).
Thread-safe. The contract: schemas/batch_encoding.md.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaTimeoutError

from pipeline.hashing import kafka_partition
from pipeline.producer.batch_encoder import encode_models, validate_event
from schemas.event import ApiCallEvent

DEFAULT_MAX_EVENTS = 4000  # a few hundred KB per container: well under Kafka's default 1 MB message limit
DEFAULT_LINGER_MS = 50.0  # the most a quiet partition's events wait in the producer


class DeliveryError(RuntimeError):
    """Kafka did not acknowledge some batches; ``lost_events`` counts their events."""

    def __init__(self, lost_events: int, first: BaseException) -> None:
        super().__init__(f"{lost_events} events were not delivered: {type(first).__name__}: {first}")
        self.lost_events = lost_events
        self.first = first


class BatchingProducer:
    def __init__(
        self,
        bootstrap: str | Sequence[str],
        topic: str,
        *,
        max_events: int = DEFAULT_MAX_EVENTS,
        linger_ms: float = DEFAULT_LINGER_MS,
        max_buffered_events: int = 200_000,
        max_message_bytes: int = 1 << 20,
        max_block_s: float = 60.0,
        compression_type: str | None = "lz4",
        **kafka_config: Any,
    ) -> None:
        if max_events < 1 or max_buffered_events < max_events:
            raise ValueError("need 1 <= max_events <= max_buffered_events")
        servers = bootstrap.split(",") if isinstance(bootstrap, str) else list(bootstrap)
        self.topic = topic
        self.max_events = max_events
        self.linger_s = linger_ms / 1000.0
        self.max_buffered_events = max_buffered_events
        self.max_message_bytes = max_message_bytes
        self.max_block_s = max_block_s
        config: dict[str, Any] = {"acks": "all", "linger_ms": 0, "compression_type": compression_type,
                                  "max_request_size": max(max_message_bytes, 1 << 20) + (64 << 10),
                                  "max_block_ms": int(max_block_s * 1000)}
        config.update(kafka_config)
        self._producer = KafkaProducer(bootstrap_servers=servers, **config)
        partitions = self._producer.partitions_for(topic)
        if not partitions:
            self._producer.close()
            raise ValueError(f"topic {topic!r} has no partitions (does it exist?)")
        self.n_partitions = len(partitions)
        self._cond = threading.Condition()
        self._buffers: list[list[ApiCallEvent]] = [[] for _ in range(self.n_partitions)]
        self._first_at = [0.0] * self.n_partitions
        self._ship_locks = [threading.Lock() for _ in range(self.n_partitions)]  # keeps per-partition order
        self._outstanding = 0  # events buffered or in flight
        self._lost = 0
        self._first_error: BaseException | None = None
        self._closed = False
        self.sent_messages = 0
        self._linger = threading.Thread(target=self._linger_loop, name="dw-batching-linger", daemon=True)
        self._linger.start()

    # --- public API ------------------------------------------------------------------------

    def send(self, event: Mapping[str, Any]) -> None:
        """Validate and buffer one event (raises InvalidEventError, DeliveryError, KafkaTimeoutError)."""
        self._raise_errors()
        model = validate_event(event)
        p = kafka_partition(model.account_id.encode(), self.n_partitions)
        deadline = time.monotonic() + self.max_block_s
        with self._cond:
            if self._closed:
                raise RuntimeError("BatchingProducer is closed")
            while self._outstanding >= self.max_buffered_events:
                if not self._cond.wait(timeout=max(0.0, deadline - time.monotonic())):
                    raise KafkaTimeoutError(f"{self._outstanding} events buffered or in flight for "
                                            f"{self.max_block_s:.0f}s (max_buffered_events)")
            buffer = self._buffers[p]
            if not buffer:
                self._first_at[p] = time.monotonic()
            buffer.append(model)
            self._outstanding += 1
            full = len(buffer) >= self.max_events
        if full:
            self._ship(p)
            self._raise_errors()

    def flush(self, timeout_s: float | None = None) -> None:
        """Send every buffered event and wait until Kafka acknowledged them all."""
        for p in range(self.n_partitions):
            self._ship(p)
        self._producer.flush(timeout=timeout_s)
        self._raise_errors()

    def close(self, timeout_s: float | None = None) -> None:
        """Flush, then release the Kafka producer; events still unacknowledged raise DeliveryError.

        If Kafka does not acknowledge everything within ``timeout_s``, the rest is
        aborted (not left to a background thread) and counted as lost.
        """
        try:
            self.flush(timeout_s)
        except KafkaTimeoutError as exc:
            self._stop_linger()
            self._force_close()
            with self._cond:
                lost = self._lost + self._outstanding
                self._lost, self._outstanding, self._first_error = 0, 0, None
            raise DeliveryError(lost, exc) from exc
        except BaseException:
            self._stop_linger()
            self._force_close()
            raise
        self._stop_linger()
        self._producer.close(timeout=timeout_s)

    def _stop_linger(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._linger.join(timeout=5)

    def _force_close(self) -> None:
        """Close without waiting: kafka-python's close() flushes first and, on a timeout, raises
        before stopping its sender thread, so the sender is stopped (batches aborted) first."""
        sender = getattr(self._producer, "_sender", None)
        if sender is not None:
            sender.force_close()
            sender.join(5)
        with contextlib.suppress(KafkaTimeoutError):  # nothing left to wait for: every batch was aborted
            self._producer.close(timeout=0)

    @property
    def buffered_events(self) -> int:
        """Events buffered or in flight (not yet acknowledged)."""
        return self._outstanding

    # --- internals ---------------------------------------------------------------------------

    def _ship(self, p: int) -> None:
        """Encode and send partition p's buffer; a failure is recorded for _raise_errors, never dropped."""
        with self._ship_locks[p]:  # take and send under one lock: batches leave in buffer order
            with self._cond:
                models, self._buffers[p] = self._buffers[p], []
            unsent = len(models)
            try:
                for chunk, value in self._encode(models) if models else []:
                    future = self._producer.send(self.topic, value=value, partition=p)
                    unsent -= len(chunk)
                    future.add_callback(self._delivered, len(chunk))
                    future.add_errback(self._failed, len(chunk))
                    self.sent_messages += 1
            except Exception as exc:
                self._failed(unsent, exc)

    def _encode(self, models: list[ApiCallEvent]) -> list[tuple[list[ApiCallEvent], bytes]]:
        """Containers of at most max_message_bytes (halving the batch when one is larger)."""
        value = encode_models(models)
        if len(value) <= self.max_message_bytes or len(models) == 1:
            return [(models, value)]
        half = len(models) // 2
        return self._encode(models[:half]) + self._encode(models[half:])

    def _delivered(self, n: int, _metadata: object = None) -> None:
        with self._cond:
            self._outstanding -= n
            self._cond.notify_all()

    def _failed(self, n: int, exc: BaseException) -> None:
        with self._cond:
            self._outstanding -= n
            self._lost += n
            if self._first_error is None:
                self._first_error = exc
            self._cond.notify_all()

    def _raise_errors(self) -> None:
        with self._cond:
            if self._first_error is None:
                return
            lost, first = self._lost, self._first_error
            self._lost, self._first_error = 0, None
        raise DeliveryError(lost, first)

    def _linger_loop(self) -> None:
        tick = max(0.001, self.linger_s / 4)
        while True:
            with self._cond:
                if self._closed:
                    return
                self._cond.wait(timeout=tick)
                now = time.monotonic()
                due = [p for p, buf in enumerate(self._buffers) if buf and now - self._first_at[p] >= self.linger_s]
            for p in due:
                self._ship(p)  # errors are surfaced by the next send/flush
