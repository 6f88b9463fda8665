"""Where generated events go: a JSONL file, or a Kafka topic paced in event time.

Kafka messages follow the contract: key = account_id (UTF-8), value = the event as
JSON, one event per message, so the pipeline reads exactly what a gateway would send.
They go through the commands' one bulk send (``jobs/produce_file.send_in_batches``),
partitioned as Kafka's default partitioner would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path

import orjson
from aiokafka.errors import KafkaError, KafkaTimeoutError

from jobs.json_bytes import event_bytes
from jobs.loadgen.render import GeneratedEvent
from jobs.produce_file import COMPRESSION, Message, bulk_producer, partition_for, send_in_batches

_WRITE_BUFFER = 1 << 20
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
    """When each event is due, so that production keeps to an event-time speed-up and/or a rate limit.

    With ``speedup`` s, wall time between the first event and an event is its event-time
    distance divided by s (late events never pull the schedule back). With
    ``rate_limit_eps`` r, the k-th event goes out no earlier than k / r seconds in.
    """

    def __init__(
        self, *, speedup: float | None, rate_limit_eps: float | None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if speedup is not None and speedup <= 0:
            raise ValueError("speedup must be positive")
        if rate_limit_eps is not None and rate_limit_eps <= 0:
            raise ValueError("rate_limit_eps must be positive")
        self._speedup = speedup
        self._rate = rate_limit_eps
        self._clock = clock
        self._started: float | None = None
        self._first_ms: int | None = None
        self._max_ms = 0
        self._count = 0

    @property
    def active(self) -> bool:
        return self._speedup is not None or self._rate is not None

    def delay(self, event_ms: int) -> float:
        """Seconds to wait before sending this event (0 when that is too short to be worth a sleep)."""
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
        return ahead if ahead >= _MIN_SLEEP_S else 0.0


async def _produce(events: Iterable[GeneratedEvent], servers: list[str], topic: str, pacer: Pacer,
                   compression: str | None, on_progress: Callable[[int], None] | None, progress_every: int,
                   timeout_s: float) -> int:
    where = ",".join(servers)
    # linger 0: send_in_batches closes the batches itself, at every pause of the pacer and every progress_every
    producer = bulk_producer(servers, compression=compression, batch_bytes=512 << 10, linger_ms=0)
    acks: list[asyncio.Future[object]] = []
    chunk: list[Message] = []
    sent = 0

    async def send_chunk() -> None:
        acks.extend((await send_in_batches(producer, topic, chunk))[1])
        chunk.clear()

    try:
        try:
            await asyncio.wait_for(producer.start(), timeout_s)
            partitions = len(await asyncio.wait_for(producer.partitions_for(topic), timeout_s))
        except (KafkaError, OSError, TimeoutError) as exc:
            raise KafkaUnavailableError(f"cannot reach Kafka at {where} within {timeout_s:g}s: {exc!r}") from exc
        for event in events:
            if pacer.active and (ahead := pacer.delay(event_time_ms(event))):
                await send_chunk()  # what is due so far leaves now
                await asyncio.sleep(ahead)
            key = event["account_id"].encode()
            chunk.append((partition_for(key, partitions, sent), key, event_bytes(event)))
            sent += 1
            if sent % progress_every == 0:
                await send_chunk()
                if any(f.done() and f.exception() for f in acks):  # fail fast: a rejected topic rejects the rest too
                    break
                acks[:] = [f for f in acks if not f.done()]  # acknowledged
                if on_progress is not None:
                    on_progress(sent)
        await send_chunk()
        failed = [r for r in await asyncio.gather(*acks, return_exceptions=True) if isinstance(r, BaseException)]
    except KafkaTimeoutError as exc:  # a partition's batch found no room within request_timeout_ms
        raise KafkaUnavailableError(f"Kafka at {where} stopped accepting events after {sent}: {exc!r}") from exc
    finally:
        await producer.stop()
    if failed:
        raise KafkaDeliveryError(f"{len(failed)} batches of the {sent} events were not delivered to {topic!r}: "
                                 f"{failed[0]!r}")
    if on_progress is not None:
        on_progress(sent)
    return sent


def produce_kafka(
    events: Iterable[GeneratedEvent],
    bootstrap_servers: str | Sequence[str],
    topic: str,
    *,
    rate_limit_eps: float | None = None,
    speedup: float | None = None,
    compression: str | None = COMPRESSION,
    on_progress: Callable[[int], None] | None = None,
    progress_every: int = 10_000,
    connect_timeout_s: float = 10.0,
) -> int:
    """Produce every event to ``topic`` (``acks=all``); returns how many were sent and acknowledged.

    Raises KafkaUnavailableError when no broker answers within ``connect_timeout_s`` (or
    the broker stops accepting events), KafkaDeliveryError when events were rejected.
    ``on_progress(count)`` is called every ``progress_every`` events and at the end.
    """
    if isinstance(bootstrap_servers, str):
        servers = [s.strip() for s in bootstrap_servers.removeprefix("kafka://").split(",")]
    else:
        servers = list(bootstrap_servers)
    pacer = Pacer(speedup=speedup, rate_limit_eps=rate_limit_eps)
    return asyncio.run(_produce(events, servers, topic, pacer, compression, on_progress, progress_every,
                                connect_timeout_s))
