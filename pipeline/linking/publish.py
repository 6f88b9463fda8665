"""Detect-side producer of the linking topics: observations, account updates and drain markers.

Called by the detect step once per batch, after its ClickHouse writes and before its offsets are
committed. ``prepare`` (CPU; run it in a worker thread) then ``send`` (awaits every
acknowledgement). On the drain batch the end markers go out only after everything else of this
source is acknowledged: that is what makes stage B's drain barrier sound. Not thread-safe: one
publisher per detect source, batches in order. Details: docs/linking.md ("Reliability").
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.linking.config import LinkingConfig
from pipeline.linking.messages import account_updates, pack_accounts, pack_end, pack_observations
from pipeline.linking.observations import LinkColumns, TemplateCarry, extract_pairs
from pipeline.linking.sent_pairs import SentPairs

# (topic, partition, value) -> an awaitable that resolves once the broker has the message.
SendFn = Callable[[str, int, bytes], Awaitable[Awaitable[object]]]


def default_source_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class PreparedBatch:
    observations: dict[int, list[bytes]]  # partition -> messages
    accounts: list[bytes]  # account-update messages for the edges topic
    n_observations: int


class LinkPublisher:
    def __init__(self, config: LinkingConfig, send: SendFn, *, observations_topic: str, edges_topic: str,
                 partitions: int, source_id: str | None = None, sent: SentPairs | None = None) -> None:
        """``sent``: skip (feature, account) pairs already sent (``sent_pairs``); default a fresh table."""
        self.config = config
        self._send = send
        self.observations_topic = observations_topic
        self.edges_topic = edges_topic
        self.partitions = partitions
        self.source_id = source_id or default_source_id()
        self._carry = TemplateCarry.empty()
        self.sent = sent if sent is not None else SentPairs()
        self._seq = 0
        self.sent_messages = 0
        self.sent_observations = 0
        self.prepare_s = 0.0
        self.send_s = 0.0

    def prepare(self, decoded: LinkColumns, frame_accounts: Sequence[str], frame_start_s: np.ndarray,
                frame_score: np.ndarray, max_scores: Mapping[str, float],
                frame_calls: np.ndarray | None = None,
                frame_counters: Mapping[str, np.ndarray] | None = None, wm: int | None = None) -> PreparedBatch:
        """Observations and account updates of one batch, packed. CPU only; call in order.

        ``frame_*``: the batch's closed frames (signatures_1m rows); their ``frame_calls`` are the
        linking process's timing evidence (``sync_tracker``; None: not sent), their ``frame_counters``
        (``messages.FRAME_COUNTERS`` columns) with the calls its pooled cluster evidence (``pooled``). ``wm``: how
        far in event time the source has read its input (``FrameStore.read_up_to_ms``; None: the batch's newest
        event or closed frame's end), sent on every message so the linking process knows (``watermark``)."""
        started = time.perf_counter()
        pairs, summary, self._carry = extract_pairs(decoded, self.config.template, self._carry)
        if len(pairs):
            pairs = pairs.select(self.sent.take_new(pairs.key))
        # Names (strings) only for the pairs to send: after an account's first batches, few.
        obs = pairs.named(decoded.raw, self.config.template.band_bits)
        self._seq += 1
        if wm is None and len(decoded):  # what the batch shows: its newest event and closed frame
            ends = (np.asarray(frame_start_s, np.int64) + 60) * 1000
            wm = int(max(np.max(decoded.raw["ts"]), ends.max(initial=0)))
        updates = account_updates(summary, frame_accounts, frame_start_s, frame_score, max_scores, self.source_id,
                                  frame_calls, frame_counters, wm)
        prepared = PreparedBatch(pack_observations(obs, self.partitions, self.source_id, self._seq, wm),
                                 pack_accounts(updates), len(obs))
        self.prepare_s += time.perf_counter() - started
        return prepared

    async def send(self, batch: PreparedBatch, *, drain: bool = False) -> None:
        """Produce the batch and wait for the broker; with ``drain``, then the end markers.

        Raises aiokafka's KafkaError when the broker refuses or times out; sending the
        same batch again is safe (stage A and the pair evidence are idempotent).
        """
        started = time.perf_counter()
        pending = [await self._send(self.observations_topic, p, value)
                   for p, values in sorted(batch.observations.items()) for value in values]
        pending += [await self._send(self.edges_topic, 0, value) for value in batch.accounts]
        await asyncio.gather(*pending)
        self.sent_messages += len(pending)
        self.sent_observations += batch.n_observations
        self.send_s += time.perf_counter() - started
        if drain:
            await self.send_end_markers()

    async def send_end_markers(self) -> None:
        """This source's end marker to every observations partition and once to the edges topic, acknowledged.

        Sent after everything else of this source is acknowledged (``send``), so the
        linking process, reading each partition in order, has every observation and
        account update of this source before it holds all the markers. Idempotent:
        the process counts each (source, partition) once.
        """
        started = time.perf_counter()
        marker = pack_end(self.source_id)
        pending = [await self._send(self.observations_topic, p, marker) for p in range(self.partitions)]
        pending.append(await self._send(self.edges_topic, 0, marker))
        await asyncio.gather(*pending)
        self.sent_messages += len(pending)
        self.send_s += time.perf_counter() - started
