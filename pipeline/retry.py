"""Retrying while a destination or source is down: the batch is held, never dropped (back-pressure)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from aiokafka.errors import KafkaError

log = logging.getLogger(__name__)

RETRY_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)  # pause before each retry; the last one repeats

T = TypeVar("T")


FETCH_RETRY_S = 1.0  # pause after a failed fetch: the consumer reconnects meanwhile


async def retry(attempt_once: Callable[[], Awaitable[T]], retryable: type[Exception], failed: str, *,
                backoff_s: Sequence[float] | None = None, on_failure: Callable[[], None] | None = None,
                give_up: Callable[[], bool] | None = None) -> T:
    """``attempt_once()`` until it does not raise ``retryable``; other exceptions propagate.

    Each failure is logged (``failed``: what went wrong, e.g. "ClickHouse unavailable")
    and reported to ``on_failure`` before the pause. When ``give_up()`` is true after a
    failure (a stop was asked for), that failure propagates instead of being retried.
    ``backoff_s`` defaults to ``RETRY_BACKOFF_S``, read at call time so tests can patch it.
    """
    pauses = RETRY_BACKOFF_S if backoff_s is None else backoff_s
    attempt = 0
    while True:
        try:
            return await attempt_once()
        except retryable as exc:
            if give_up is not None and give_up():
                raise
            pause = pauses[min(attempt, len(pauses) - 1)]
            log.warning("%s (%s); holding the batch, retry %d in %.1fs", failed, exc, attempt + 1, pause)
            if on_failure is not None:
                on_failure()
            attempt += 1
            await asyncio.sleep(pause)


async def fetch_or_wait(consumer: Any, what: str, *, timeout_ms: int, max_records: int) -> dict[Any, list[Any]]:
    """One ``getmany`` of an aiokafka consumer; on a Kafka error, log, pause and return nothing.

    The caller's loop simply fetches again: nothing was consumed, so nothing is lost.
    """
    try:
        return await consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
    except KafkaError as exc:
        log.warning("%s: fetch failed (%s); retrying in %.1fs", what, exc, FETCH_RETRY_S)
        await asyncio.sleep(FETCH_RETRY_S)
        return {}
