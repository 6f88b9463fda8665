"""The detect step: one fetched batch → decode → detector → dead letters → ClickHouse → commit.

Commit order, followed in ``handle`` for every batch:
  1. dead letters produced and acknowledged by Kafka;
  2. ClickHouse inserts acknowledged (retried with back-off while ClickHouse is
     unavailable: the agent holds the batch, the bounded channel fills, and the
     source stops fetching — back-pressure, nothing dropped);
  3. the batch's offsets committed.
A crash anywhere before 3 re-reads the batch; its inserts are deduplicated
(insert tokens, ReplacingMergeTree keys).

CPU-heavy work (decode, Numba kernels, inserts) runs in a worker thread so the
event loop keeps heartbeating and serving /stats; batches are handled one at a
time, in order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from pipeline.decode.json_events import DecodedBatch, decode_json_batch
from pipeline.detection import DetectionOutput, Detector
from pipeline.settings import Settings
from pipeline.sinks.batch_outputs import batch_token, write_batch_outputs
from pipeline.sinks.clickhouse import ClickHouseUnavailable, ClickHouseWriter
from pipeline.sinks.dead_letter import DeadLetterSink
from pipeline.sources.fetched_batch import FetchedBatch
from pipeline.stats import PipelineStats

log = logging.getLogger(__name__)

RETRY_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0)


class DetectStep:
    def __init__(
        self,
        settings: Settings,
        detector: Detector,
        writer: ClickHouseWriter,
        dead_letters: DeadLetterSink,
        stats: PipelineStats,
        on_drained: Callable[[], None],
    ) -> None:
        self.settings = settings
        self.detector = detector
        self.writer = writer
        self.dead_letters = dead_letters
        self.stats = stats
        self.on_drained = on_drained

    def decode(self, batch: FetchedBatch) -> DecodedBatch:
        s = self.settings
        return decode_json_batch(
            batch.values, batch.keys, batch.partitions, batch.offsets,
            max_message_bytes=s.max_message_bytes,
            max_ts_ms=int(time.time() * 1000) + s.max_future_skew_s * 1000,
        )

    async def handle(self, batch: FetchedBatch) -> None:
        started = time.perf_counter()
        decoded = await asyncio.to_thread(self.decode, batch)
        output = await asyncio.to_thread(self.detector.process, decoded, force_close=batch.drain)
        if decoded.rejects:
            await self.dead_letters.send(decoded.rejects)
        insert_s = await self._write_with_retry(decoded, output, batch_token(batch.partitions, batch.offsets))
        await batch.ack()
        self._count(batch, decoded, output, started, insert_s)
        if batch.drain:
            self.stats.drained = True
            log.info("drained: every frame closed, written and committed")
            self.on_drained()

    async def _write_with_retry(self, decoded: DecodedBatch, output: DetectionOutput, token: str) -> float:
        attempt = 0
        while True:
            try:
                seconds = await asyncio.to_thread(
                    write_batch_outputs, self.writer, decoded, output, token,
                    store_raw=self.settings.store_raw_events,
                )
            except ClickHouseUnavailable as exc:
                self.stats.clickhouse_available = False
                self.stats.clickhouse_retries += 1
                pause = RETRY_BACKOFF_S[min(attempt, len(RETRY_BACKOFF_S) - 1)]
                log.warning("ClickHouse unavailable (%s); holding the batch, retry %d in %.1fs",
                            exc, attempt + 1, pause)
                attempt += 1
                await asyncio.sleep(pause)
                continue
            if not self.stats.clickhouse_available:
                log.warning("ClickHouse is back after %d retries; resuming", attempt)
            self.stats.clickhouse_available = True
            return seconds

    def _count(self, batch: FetchedBatch, decoded: DecodedBatch, output: DetectionOutput, started: float,
               insert_s: float) -> None:
        st = self.stats
        st.batches += 1
        st.events_in += len(batch)
        st.events_valid += len(decoded)
        st.events_rejected += len(decoded.rejects)
        st.rejected_by_reason.update(r.reason for r in decoded.rejects)
        st.late_events += output.late_events
        st.signature_rows += output.signature_rows
        st.alerts += len(output.alerts)
        st.accounts = len(self.detector.accounts)
        st.watermark_ms = max(st.watermark_ms, self.detector.frames.watermark_ms())
        st.last_batch_events = len(batch)
        st.last_batch_seconds = round(time.perf_counter() - started, 4)
        st.last_insert_seconds = round(insert_s, 4)
