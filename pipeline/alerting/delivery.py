"""The delivery task: sends the outbox's pending notifications, one courier (asyncio task) per notifier.

``offer(rows)`` (what ``Outbox.add`` calls, from any thread) hands new rows to their courier and
never blocks; a courier holds at most ``max_queue`` rows in memory, the rest wait in ClickHouse.
A courier sends in order, one transition per alert per request, records each outcome, and is
reloaded from ``alert_notifications`` at start; delivery is at least once. Retries, timeouts and
re-sends: docs/alerting.md, "Notifiers".
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence

from clickhouse_connect.driver.client import Client

from pipeline.alerting.notifiers import configured_notifiers
from pipeline.alerting.notifiers.base import DELIVERED as SENT_OK
from pipeline.alerting.notifiers.base import FAILED as REFUSED
from pipeline.alerting.notifiers.base import Notification, Notifier, SendResult
from pipeline.alerting.outbox import DELIVERED, FAILED, PENDING, Outbox, OutboxRow
from pipeline.alerting.transitions import FIRING
from pipeline.metrics import WorkerMetrics
from pipeline.retry import retry
from pipeline.settings import Settings
from pipeline.sinks.clickhouse import ClickHouseError, ClickHouseWriter

log = logging.getLogger(__name__)

BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 300.0
MAX_QUEUE = 10_000
MAX_BATCH = 500
# The whole send of one batch, on top of each request's own timeout (a notifier posting
# several requests, e.g. one per webhook group, gets this long in all).
SEND_TIMEOUT_S = 60.0
CLICKHOUSE_RETRY_S = 5.0
# A stopping worker waits this long at most for notifications already due (e.g. a drain's last alerts).
STOP_GRACE_S = 5.0


def backoff_s(attempts: int, base_s: float = BACKOFF_BASE_S, cap_s: float = BACKOFF_CAP_S) -> float:
    """Wait before attempt ``attempts + 1``: base, 2 × base, 4 × base, … at most ``cap_s``."""
    return min(base_s * 2 ** max(attempts - 1, 0), cap_s)


class Courier:
    """Delivers one notifier's notifications. Everything but ``offer_threadsafe`` runs in the loop."""

    def __init__(self, notifier: Notifier, outbox: Outbox, *, resend_s: float, metrics: WorkerMetrics | None,
                 backoff_base_s: float, backoff_cap_s: float, max_queue: int,
                 clock_ms: Callable[[], int]) -> None:
        self.notifier = notifier
        self.name = notifier.name
        self.outbox = outbox
        self.resend_s = resend_s
        self.metrics = metrics
        self.backoff = (backoff_base_s, backoff_cap_s)
        self.max_queue = max_queue
        self.clock_ms = clock_ms
        self.pending: dict[str, OutboxRow] = {}  # insertion order = delivery order
        self.firing: dict[str, OutboxRow] = {}  # alert_key → its delivered firing row (re-sent)
        self.overflow = False  # rows left in ClickHouse only: reload once caught up
        self.unsaved: dict[str, OutboxRow] = {}  # states ClickHouse has not taken yet
        self.wake = asyncio.Event()
        self.next_refresh_ms = 0
        self.refreshes = 0

    # --- new rows ---------------------------------------------------------------------------
    def offer(self, rows: Sequence[OutboxRow]) -> None:
        for row in rows:
            # Known, or sent with its state not yet stored (ClickHouse still says pending): skip.
            if row.notification_id in self.pending or row.notification_id in self.unsaved:
                continue
            # Once rows wait in ClickHouse, later ones wait there too: the reload keeps their order.
            if self.overflow or len(self.pending) >= self.max_queue:
                self.overflow = True
                continue
            self.pending[row.notification_id] = row
        self._gauge()
        self.wake.set()

    # --- the loop ---------------------------------------------------------------------------
    async def run(self) -> None:
        await self._reload(firing=self.notifier.refreshes_firing)
        while True:
            now = self.clock_ms()
            if self.unsaved:
                await self._save()
            due = self._due(now)
            if due:
                await self._deliver(due)
                continue
            if self.overflow and len(self.pending) < self.max_queue // 2:
                await self._reload(firing=False)
                continue
            if self.firing and now >= self.next_refresh_ms:
                await self._refresh()
                continue
            await self._sleep_until(self._next_wake_ms(now))

    def _due(self, now: int) -> list[OutboxRow]:
        """Due rows in order, at most one per alert: a later transition of an alert waits for the earlier one."""
        due: list[OutboxRow] = []
        seen: set[str] = set()
        for row in self.pending.values():
            key = row.transition.alert_key
            if key in seen:
                continue
            seen.add(key)
            if row.next_attempt_ms <= now:
                due.append(row)
                if len(due) >= MAX_BATCH:
                    break
        return due

    def has_due(self) -> bool:
        now = self.clock_ms()
        return any(r.next_attempt_ms <= now for r in self.pending.values())

    def _next_wake_ms(self, now: int) -> int:
        wake = now + 60_000
        if self.pending:
            wake = min(wake, min(r.next_attempt_ms for r in self.pending.values()))
        if self.firing:
            wake = min(wake, self.next_refresh_ms)
        if self.unsaved:
            wake = min(wake, now + int(CLICKHOUSE_RETRY_S * 1000))
        return wake

    async def _sleep_until(self, wake_ms: int) -> None:
        self.wake.clear()
        delay = max(wake_ms - self.clock_ms(), 0) / 1000
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for loses a cancellation that arrives as
        # the wake-up does, and stop() then waited for ever on a courier that kept running.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self.wake.wait()

    async def _deliver(self, due: list[OutboxRow]) -> None:
        results = await self._send([r.notification for r in due])
        now = self.clock_ms()
        for row, result in zip(due, results, strict=True):
            key = row.transition.alert_key
            if result.outcome == SENT_OK:
                done = row.with_state(DELIVERED, now_ms=now)
                if self.notifier.refreshes_firing:
                    if row.transition.state == FIRING:
                        self.firing[key] = done
                        self.next_refresh_ms = self.next_refresh_ms or now + int(self.resend_s * 1000)
                    else:
                        self.firing.pop(key, None)
            elif result.outcome == REFUSED:
                done = row.with_state(FAILED, now_ms=now, error=result.error)
                log.error("%s refused alert notification %s (%s %s) for good: %s", self.name,
                          row.notification_id, row.transition.rule, row.transition.state, result.error)
            else:
                wait = backoff_s(row.attempts + 1, *self.backoff)
                retry = row.with_state(PENDING, now_ms=now, error=result.error,
                                       next_attempt_ms=now + int(wait * 1000))
                log.warning("%s: delivery of %s failed (attempt %d): %s; retry in %.1fs", self.name,
                            row.notification_id, retry.attempts, result.error, wait)
                self.pending[row.notification_id] = retry
                self.unsaved[row.notification_id] = retry
                self._count("failed")
                continue
            self.pending.pop(row.notification_id, None)
            self.unsaved[row.notification_id] = done
            self._count("sent" if done.delivery == DELIVERED else "dropped")
        self._gauge()
        await self._save()

    async def _refresh(self) -> None:
        """Re-send every firing alert (Alertmanager forgets an alert whose endsAt passed)."""
        rows = list(self.firing.values())
        for start in range(0, len(rows), MAX_BATCH):
            results = await self._send([r.notification for r in rows[start:start + MAX_BATCH]])
            if not all(r.ok for r in results):
                log.warning("%s: re-sending %d firing alerts failed: %s", self.name, len(results),
                            next(r.error for r in results if not r.ok))
        self.refreshes += 1
        self.next_refresh_ms = self.clock_ms() + int(self.resend_s * 1000)

    async def _send(self, batch: list[Notification]) -> list[SendResult]:
        started = time.perf_counter()
        try:
            results = await asyncio.wait_for(self.notifier.send(batch), timeout=SEND_TIMEOUT_S)
        except TimeoutError:
            results = [SendResult("retry", f"{self.name} did not finish within {SEND_TIMEOUT_S:g}s")] * len(batch)
        except Exception as exc:  # a notifier bug must not stop deliveries: count, log, retry later
            log.exception("%s: send raised", self.name)
            results = [SendResult("retry", f"{type(exc).__name__}: {exc}")] * len(batch)
        if self.metrics is not None:
            self.metrics.notification_duration.labels(notifier=self.name).observe(time.perf_counter() - started)
        if len(results) != len(batch):
            raise RuntimeError(f"{self.name}.send returned {len(results)} results for {len(batch)} notifications")
        return results

    # --- ClickHouse ----------------------------------------------------------------------
    async def _save(self) -> None:
        rows = list(self.unsaved.values())
        try:
            await asyncio.to_thread(self.outbox.update, rows)
        except ClickHouseError as exc:
            log.warning("%s: storing %d delivery states failed (%s); retry in %.0fs", self.name, len(rows), exc,
                        CLICKHOUSE_RETRY_S)
            return
        for row in rows:
            if self.unsaved.get(row.notification_id) is row:
                del self.unsaved[row.notification_id]

    async def _reload(self, *, firing: bool) -> None:
        """Pending (and, with ``firing``, still-firing) rows from ClickHouse, retried until it answers."""
        async def load() -> tuple[list[OutboxRow], list[OutboxRow]]:
            pending = await asyncio.to_thread(self.outbox.pending, self.name)
            return pending, await asyncio.to_thread(self.outbox.firing, self.name) if firing else []

        pending, active = await retry(load, ClickHouseError, f"{self.name}: loading the outbox failed",
                                      backoff_s=(CLICKHOUSE_RETRY_S,))
        self.overflow = False
        self.offer(pending)  # oldest first; beyond max_queue the rest stays for the next reload
        for row in active:
            self.firing.setdefault(row.transition.alert_key, row)
        if active:
            self.next_refresh_ms = 1  # re-send at once: their endsAt may have passed while we were down
            log.info("%s: %d firing alerts to keep re-sending, %d pending notifications", self.name, len(active),
                     len(pending))

    def _count(self, result: str) -> None:
        if self.metrics is not None:
            self.metrics.notifications.labels(notifier=self.name, result=result).inc()

    def _gauge(self) -> None:
        if self.metrics is not None:
            self.metrics.notification_queue.labels(notifier=self.name).set(len(self.pending))


class Delivery:
    """Runs one courier per notifier with the worker: ``start()`` in its loop, ``stop()`` at shutdown."""

    def __init__(self, outbox: Outbox, notifiers: Sequence[Notifier], *, resend_s: float,
                 metrics: WorkerMetrics | None = None, backoff_base_s: float = BACKOFF_BASE_S,
                 backoff_cap_s: float = BACKOFF_CAP_S, max_queue: int = MAX_QUEUE,
                 clock_ms: Callable[[], int] = lambda: int(time.time() * 1000)) -> None:
        names = [n.name for n in notifiers]
        if list(outbox.notifiers) != names:
            raise ValueError(f"the outbox writes rows for {list(outbox.notifiers)} but the notifiers are {names}")
        self.couriers = {n.name: Courier(n, outbox, resend_s=resend_s, metrics=metrics,
                                         backoff_base_s=backoff_base_s, backoff_cap_s=backoff_cap_s,
                                         max_queue=max_queue, clock_ms=clock_ms) for n in notifiers}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        outbox.listen(self.offer_threadsafe)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        log.info("alert delivery: %s", ", ".join(self.couriers) or "no notifier configured (alerts stay in ClickHouse)")
        self._tasks = [asyncio.create_task(self._run(c), name=f"deliver-{c.name}") for c in self.couriers.values()]

    async def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """Stop the couriers, after at most ``grace_s`` for deliveries already due (not those backing off)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        while self._tasks and loop.time() < deadline and any(c.has_due() for c in self.couriers.values()):
            await asyncio.sleep(0.1)
        for task in self._tasks:
            while not task.done():  # cancel again should a cancellation be lost
                task.cancel()
                await asyncio.wait({task}, timeout=1.0)
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for courier in self.couriers.values():
            if courier.unsaved:
                with contextlib.suppress(ClickHouseError):  # unsaved states: those rows are sent again
                    await asyncio.to_thread(courier.outbox.update, list(courier.unsaved.values()))
            await courier.notifier.close()
        self._loop = None

    def offer_threadsafe(self, rows: Sequence[OutboxRow]) -> None:
        """Hand new rows to their couriers; callable from any thread, never blocks.

        Before ``start`` (or after ``stop``) nothing is held: the rows are in ClickHouse and the
        next start reloads them.
        """
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        if _running_loop() is loop:
            self._offer(rows)
        else:
            loop.call_soon_threadsafe(self._offer, rows)

    def _offer(self, rows: Sequence[OutboxRow]) -> None:
        by_notifier: dict[str, list[OutboxRow]] = {}
        for row in rows:
            by_notifier.setdefault(row.notifier, []).append(row)
        for name, group in by_notifier.items():
            courier = self.couriers.get(name)
            if courier is not None:
                courier.offer(group)

    @property
    def pending(self) -> int:
        return sum(len(c.pending) for c in self.couriers.values())

    async def _run(self, courier: Courier) -> None:
        # A courier that crashes (a bug) is restarted after a pause: the others go on meanwhile.
        while True:
            try:
                await courier.run()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: delivery task crashed; restarting in %.0fs", courier.name, CLICKHOUSE_RETRY_S)
                await asyncio.sleep(CLICKHOUSE_RETRY_S)


def build_alert_delivery(settings: Settings, writer: ClickHouseWriter, client: Client,
                         metrics: WorkerMetrics | None = None) -> tuple[Outbox, Delivery]:
    """The worker's outbox and delivery task for the notifiers configured in ``settings``."""
    notifiers = configured_notifiers(settings)
    outbox = Outbox(writer, client, settings.clickhouse_database, [n.name for n in notifiers])
    return outbox, Delivery(outbox, notifiers, resend_s=settings.notify_resend_s, metrics=metrics)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
