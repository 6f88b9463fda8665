"""What the detect worker holds of linking (DW_LINKING child or external): one handle for app, /stats, /metrics.

``publisher`` feeds the linking topics from the detect step; ``results`` applies the
linking process's results; ``supervisor`` runs that process as a child (None when an
operator runs it: external). Everything else is read from those three: the last stats
the process sent, whether linking is up, why not (``error``), restarts, the backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from pipeline.linking.publish import LinkPublisher
from pipeline.linking.results_consumer import ResultsConsumer
from pipeline.linking.supervisor import LinkingSupervisor

log = logging.getLogger(__name__)

# External mode: linking counts as up while a result (the process sends stats at least every few
# seconds, also when idle) arrived within this many seconds.
RESULTS_STALE_S = 60.0
# Bounded: after the child exited 0, the consumer has this long to read the drained result it sent.
DRAINED_RESULT_GRACE_S = 60.0


@dataclass
class Linking:
    publisher: LinkPublisher
    results: ResultsConsumer
    supervisor: LinkingSupervisor | None = None
    drain_error: str | None = None  # set by wait_drained when linking ended without draining this source
    started_at: float = field(default_factory=time.monotonic)

    @property
    def stats(self) -> dict[str, object]:
        return self.results.stats

    @property
    def drain_complete(self) -> asyncio.Event:
        return self.results.drained

    @property
    def restarts(self) -> int:
        return 0 if self.supervisor is None else self.supervisor.restarts

    @property
    def backlog(self) -> dict[str, int]:
        """Stage -> messages waiting in its input topic, as the linking process last measured it."""
        found = self.stats.get("backlog")
        return {str(k): int(v) for k, v in found.items()} if isinstance(found, dict) else {}

    @property
    def error(self) -> str | None:
        """Why linking is not working now (None while it is)."""
        if self.drain_error is not None:
            return self.drain_error
        if self.results.failure is not None:
            return f"link results consumer failed: {self.results.failure!r}"
        if self.supervisor is not None:
            return self.supervisor.error
        last = self.results.last_result_at
        quiet_s = time.monotonic() - (self.started_at if last is None else last)
        if quiet_s > RESULTS_STALE_S:
            return f"no result from the external linking process for {quiet_s:.0f}s"
        return None

    @property
    def up(self) -> bool:
        return self.error is None

    async def wait_drained(self) -> None:
        """Until the drained result of this worker's source is written, or linking can no longer send it
        (the child finished or was given up, the consumer failed): then ``drain_error`` says why."""
        drained = asyncio.ensure_future(self.results.drained.wait())
        waits: set[asyncio.Future[Any]] = {drained}
        if self.supervisor is not None:
            waits.add(asyncio.ensure_future(self.supervisor.ended.wait()))
        try:
            while not self.results.drained.is_set():
                await asyncio.wait(waits, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
                if self.results.drained.is_set():
                    return
                if self.results.failure is not None:
                    self.drain_error = f"link results consumer failed: {self.results.failure!r}"
                    return
                if self.supervisor is not None and self.supervisor.ended.is_set():
                    await self._after_child_ended(drained)
                    return
        finally:
            for w in waits:
                w.cancel()

    async def _after_child_ended(self, drained: asyncio.Future[Any]) -> None:
        assert self.supervisor is not None
        if self.supervisor.gave_up:
            self.drain_error = self.supervisor.error
            return
        # Exited 0 after sending the drained result: let the consumer read it.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(drained), timeout=DRAINED_RESULT_GRACE_S)
        if not self.results.drained.is_set():
            self.drain_error = "the linking process exited without draining this worker's source"

    def as_dict(self) -> dict[str, Any]:
        p, r = self.publisher, self.results
        return {**self.stats, "observations_sent": p.sent_observations,
                "observations_already_sent": p.sent.skipped, "messages_sent": p.sent_messages,
                "publish_prepare_s": round(p.prepare_s, 3), "publish_send_s": round(p.send_s, 3),
                "results": r.results, "bad_results": r.bad_results, "results_write_s": round(r.write_s, 3),
                "cluster_accounts": len(r.cluster_of), "mode": "external" if self.supervisor is None else "child",
                "process_alive": None if self.supervisor is None else self.supervisor.alive,
                "process_restarts": self.restarts,
                "drained": self.drain_complete.is_set(), "error": self.error, "backlog": self.backlog}
