"""Retrying a write while its destination is down: the batch is held, never dropped (back-pressure)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

log = logging.getLogger(__name__)

RETRY_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)  # pause before each retry; the last one repeats

T = TypeVar("T")


async def retry(attempt_once: Callable[[], Awaitable[T]], retryable: type[Exception], failed: str,
                backoff_s: Sequence[float], on_failure: Callable[[], None] | None = None) -> T:
    """``attempt_once()`` until it does not raise ``retryable``; other exceptions propagate.

    Each failure is logged (``failed``: what went wrong, e.g. "ClickHouse unavailable")
    and reported to ``on_failure`` before the pause.
    """
    attempt = 0
    while True:
        try:
            return await attempt_once()
        except retryable as exc:
            pause = backoff_s[min(attempt, len(backoff_s) - 1)]
            log.warning("%s (%s); holding the batch, retry %d in %.1fs", failed, exc, attempt + 1, pause)
            if on_failure is not None:
                on_failure()
            attempt += 1
            await asyncio.sleep(pause)
