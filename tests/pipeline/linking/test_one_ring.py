"""The linking process keeps one ring of counters per minute: the timing evidence reads its calls, the pooled
evidence its counters; a frame without counters (version 2) is timing evidence only; an older checkpoint's
two rings are skipped."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import orjson
from aiokafka import TopicPartition

from pipeline.linking.checkpoint import MANIFEST_KEY, StateLog, block_key, encode_blocks, encode_manifest
from pipeline.linking.config import LinkingConfig
from pipeline.linking.messages import FRAME_COUNTERS, AccountUpdates, pack_accounts
from pipeline.linking.pooled import MINUTE_MS
from pipeline.linking.process import LinkingProcess
from pipeline.linking.sync_tracker import ring_minutes
from pipeline.linking.topics import LinkTopics
from pipeline.settings import load_settings

TOPICS = LinkTopics.for_group("one-ring")
T0 = 29_000_000  # epoch minute of the first frame


class Record(NamedTuple):
    offset: int
    value: bytes


def frames(accounts: list[str], minute: int, calls: int, *, counters: bool = True) -> bytes:
    """One account-update message: a frame of ``minute`` per account, with its counters (version 3) or, as an
    older worker sends it, its calls only (version 2)."""
    n = len(accounts)
    ts = (minute + 1) * MINUTE_MS
    sent = AccountUpdates("w", accounts, [calls] * n, [ts] * n, [1.0] * n, [1.0] * n, [1.0] * n, [ts] * n,
                          list(range(n)), [minute] * n, [calls] * n,
                          {name: [10 * calls] * n for name in FRAME_COUNTERS})
    (body,) = pack_accounts(sent)
    if counters:
        return body
    older = orjson.loads(body)
    return orjson.dumps({k: v for k, v in older.items() if k[6:] not in FRAME_COUNTERS} | {"v": 2})


def process(config: LinkingConfig, bounded: bool = False) -> LinkingProcess:
    out = LinkingProcess(load_settings(), bounded=bounded, drain_sources=["w"], topics=TOPICS, config=config)
    out.init_stage_b(1)
    return out


def fetch(values: list[bytes]) -> dict[TopicPartition, list[Record]]:
    return {TopicPartition(TOPICS.edges, 0): [Record(i, v) for i, v in enumerate(values)]}


def test_the_timing_evidence_reads_the_calls_and_the_pooled_evidence_the_counters_of_one_ring(
        config: LinkingConfig) -> None:
    for bounded in (False, True):
        p = process(config, bounded)
        assert p.sync.ring is p.pooled.ring
        assert p.pooled.ring.width == max(p.pooled.span, ring_minutes(config, bounded))
    p.apply_fetch(fetch([frames(["a", "b"], T0, 2), frames(["c"], T0 + 1, 5, counters=False),
                         frames(["a"], T0 + 1, 3)]))
    ring = p.pooled.ring
    calls = ring.window(ring.slots_of(["a", "b", "c"]), T0, 2)
    assert np.array_equal(calls, np.array([[2, 3], [2, 0], [np.nan, 5]]), equal_nan=True)
    assert p.pooled.at(["a", "b", "c"], (T0 + 2) * MINUTE_MS).calls == 7  # c's calls came without counters
    assert p.pooled.frames == 3 and p.stats_dict()["sync_accounts"] == 3


def test_an_older_checkpoint_restores_its_clock_and_state_with_an_empty_ring(config: LinkingConfig) -> None:
    p = process(config)
    p.apply_fetch(fetch([frames(["a", "b"], T0 + t, 2) for t in range(20)]))
    sections = {**p.sections(), "minutes": {}}
    blocks = encode_blocks(sections, 1)
    older = {"timing": {"a": [T0, [2] * 20, T0]}, "pooled": {"a": [[T0, *[2] * (len(FRAME_COUNTERS) + 1)]]}}
    for name, entries in older.items():
        blocks.append((block_key(1, len(blocks)), orjson.dumps({"gen": 1, "w": "", "i": len(blocks), "s": name,
                                                                "d": entries})))
    log = StateLog()
    for key, value in blocks:
        log.add(key, value)
    log.add(MANIFEST_KEY, encode_manifest(1, len(blocks), {}, p.checkpoint_meta()))
    restored = log.restore()
    assert restored is not None and set(restored.sections) == set(sections)  # the older two: skipped
    back = process(config)
    back.restore(restored)
    assert back.accounts == p.accounts and back.sync.clock() == p.sync.clock()
    assert len(back.pooled.ring) == 0 and back.pooled.newest == -1  # the ring fills again
