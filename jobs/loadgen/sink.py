"""Where generated events go: a JSONL file, or a Kafka topic paced in event time.

Kafka messages follow the contract: key = account_id (UTF-8), value = the event as
JSON, one event per message, so the pipeline reads exactly what a gateway would send.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path

import orjson
from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError

from jobs.loadgen.render import GeneratedEvent

_WRITE_BUFFER = 1 << 20
_FLUSH_TIMEOUT_S = 150.0  # longer than the producer's delivery timeout, so failures surface as errors
_MIN_SLEEP_S = 0.005  # sleeping for less is all syscall overhead


class KafkaUnavailableError(RuntimeError):
    """The broker could not be reached, or stopped accepting events."""


class KafkaDeliveryError(RuntimeError):
    """Some events were not acknowledged by the broker."""


def write_jsonl(events: Iterable[GeneratedEvent], path: Path | str) -> int:
    """Write one JSON object per line; returns the number of events written."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    dumps, option = orjson.dumps, orjson.OPT_APPEND_NEWLINE
    with target.open("wb", buffering=_WRITE_BUFFER) as out:
        write = out.write
        for event in events:
            write(dumps(event, option=option))
            count += 1
    return count


def event_time_ms(event: GeneratedEvent) -> int:
    """The event's ``ts`` as epoch milliseconds, whether sent as an integer or RFC 3339 text."""
    ts = event["ts"]
    if isinstance(ts, int):
        return ts
    moment = datetime.fromisoformat(ts)
    return int(moment.timestamp() * 1000 + 0.5)


class Pacer:
    """Sleeps so that production keeps to an event-time speed-up and/or a rate limit.

    With ``speedup`` s, wall time between the first event and an event is its event-time
    distance divided by s (late events never pull the schedule back). With
    ``rate_limit_eps`` r, the k-th event goes out no earlier than k / r seconds in.
    """

    def __init__(
        self,
        *,
        speedup: float | None,
        rate_limit_eps: float | None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if speedup is not None and speedup <= 0:
            raise ValueError("speedup must be positive")
        if rate_limit_eps is not None and rate_limit_eps <= 0:
            raise ValueError("rate_limit_eps must be positive")
        self._speedup = speedup
        self._rate = rate_limit_eps
        self._clock = clock
        self._sleep = sleep
        self._started: float | None = None
        self._first_ms: int | None = None
        self._max_ms = 0
        self._count = 0

    @property
    def active(self) -> bool:
        return self._speedup is not None or self._rate is not None

    def wait(self, event_ms: int) -> None:
        """Block until the event is due."""
        if self._started is None:
            self._started = self._clock()
            self._first_ms = self._max_ms = event_ms
        due = 0.0
        if self._speedup is not None:
            self._max_ms = max(self._max_ms, event_ms)
            due = (self._max_ms - (self._first_ms or 0)) / 1000.0 / self._speedup
        if self._rate is not None:
            due = max(due, self._count / self._rate)
        self._count += 1
        ahead = self._started + due - self._clock()
        if ahead >= _MIN_SLEEP_S:
            self._sleep(ahead)


class _Failures:
    def __init__(self) -> None:
        self.count = 0
        self.first: BaseException | None = None

    def record(self, exc: BaseException) -> None:
        self.count += 1
        if self.first is None:
            self.first = exc


def produce_kafka(
    events: Iterable[GeneratedEvent],
    bootstrap_servers: str | Sequence[str],
    topic: str,
    *,
    rate_limit_eps: float | None = None,
    speedup: float | None = None,
    compression: str | None = "lz4",
    on_progress: Callable[[int], None] | None = None,
    progress_every: int = 10_000,
    connect_timeout_s: float = 10.0,
) -> int:
    """Produce every event to ``topic``; returns how many were sent and acknowledged.

    Raises KafkaUnavailableError when no broker answers within ``connect_timeout_s`` (or
    the broker stops accepting events), KafkaDeliveryError when events were rejected.
    ``on_progress(count)`` is called every ``progress_every`` events and at the end.
    """
    if isinstance(bootstrap_servers, str):
        servers = [s.strip() for s in bootstrap_servers.removeprefix("kafka://").split(",")]
    else:
        servers = list(bootstrap_servers)
    where = ",".join(servers)
    timeout_ms = int(connect_timeout_s * 1000)
    try:
        producer = KafkaProducer(
            bootstrap_servers=servers,
            acks="all",
            compression_type=compression,
            linger_ms=20,  # fill batches: throughput over the last few ms of latency
            batch_size=512 * 1024,
            max_request_size=8 * 1024 * 1024,
            bootstrap_timeout_ms=timeout_ms,
            max_block_ms=timeout_ms,
            request_timeout_ms=30_000,
            delivery_timeout_ms=120_000,
        )
    except KafkaError as exc:
        raise KafkaUnavailableError(
            f"cannot reach Kafka at {where} within {connect_timeout_s:g}s: {exc}"
        ) from exc
    pacer = Pacer(speedup=speedup, rate_limit_eps=rate_limit_eps)
    failures = _Failures()
    sent = 0
    try:
        for event in events:
            if pacer.active:
                pacer.wait(event_time_ms(event))
            future = producer.send(topic, key=event["account_id"].encode(), value=orjson.dumps(event))
            future.add_errback(failures.record)
            sent += 1
            if sent % progress_every == 0:
                if failures.count:  # fail fast: a rejected topic rejects everything after it too
                    break
                if on_progress is not None:
                    on_progress(sent)
        producer.flush(timeout=_FLUSH_TIMEOUT_S)
    except KafkaTimeoutError as exc:
        raise KafkaUnavailableError(f"Kafka at {where} stopped accepting events after {sent}: {exc}") from exc
    finally:
        producer.close(timeout=connect_timeout_s)
    if failures.count:
        raise KafkaDeliveryError(
            f"{failures.count} of {sent} events were not delivered to {topic!r}: {failures.first}"
        )
    if on_progress is not None:
        on_progress(sent)
    return sent
