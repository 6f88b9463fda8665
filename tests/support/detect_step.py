"""A DetectStep over plain fakes that record every external effect in one list, so tests read the order.

``event``/``harvest`` make the detect step's input: one event, or enough of one account's to fire an alert.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from aiokafka.errors import KafkaConnectionError

from pipeline.decode.rejects import Rejected
from pipeline.detect.detector import Detector
from pipeline.detect.step import DetectStep
from pipeline.settings import load_settings
from pipeline.sinks.clickhouse import ClickHouseUnavailable
from pipeline.sources.fetched_batch import FetchedBatch
from pipeline.state.manager import StateManager
from pipeline.state.state_topic import Record
from pipeline.stats import PipelineStats
from tests.support.events import MINIMAL

T0 = 1_770_888_600_000


class Effects(list[tuple[str, Any]]):
    def kinds(self) -> list[str]:
        return [k for k, _ in self]


class FakeWriter:
    def __init__(self, effects: Effects, failures: int = 0) -> None:
        self.effects = effects
        self.failures = failures

    def write(self, table: str, columns: Mapping[str, Any], dedup_token: str | None = None) -> int:
        if self.failures:
            self.failures -= 1
            raise ClickHouseUnavailable("connection refused", table=table)
        self.effects.append(("clickhouse", (table, dict(columns))))
        return len(next(iter(columns.values())))


class FakeDeadLetters:
    def __init__(self, effects: Effects) -> None:
        self.effects = effects

    async def send(self, rejects: Sequence[Rejected]) -> None:
        self.effects.append(("dead_letters", [r.value for r in rejects]))


class FakeStateTopic:
    topic = "state"

    def __init__(self, effects: Effects, failures: int = 0) -> None:
        self.effects = effects
        self.failures = failures

    async def write(self, entities: Sequence[Record], markers: Sequence[Record]) -> None:
        if self.failures:
            self.failures -= 1
            raise KafkaConnectionError("broker away")
        self.effects.append(("checkpoint", ([k for _, k, _ in entities], [k for _, k, _ in markers])))


def make_step(effects: Effects, *, interval: float = 0.0, ch_failures: int = 0, state_failures: int = 0,
              ) -> DetectStep:
    settings = load_settings(checkpoint_interval_s=interval)
    state = StateManager(make_detector=lambda: Detector(settings, 2),
                         topic=FakeStateTopic(effects, state_failures),  # type: ignore[arg-type]
                         events_topic="e", bootstrap_servers=["unused:1"], dedup_window=1000,
                         decode=lambda *a: None)  # type: ignore[arg-type,return-value]
    return DetectStep(settings, state, FakeWriter(effects, ch_failures), FakeDeadLetters(effects),  # type: ignore[arg-type]
                      PipelineStats(), on_drained=lambda: effects.append(("drained", None)))


def make_batch(effects: Effects, values: list[bytes], first_offset: int = 0, *, drain: bool = False
               ) -> FetchedBatch:
    async def ack(batch: FetchedBatch) -> None:
        effects.append(("commit", dict(batch.commit_offsets)))

    offsets = list(range(first_offset, first_offset + len(values)))
    commit = {0: offsets[-1] + 1} if values else {}
    return FetchedBatch(values, [None] * len(values), [0] * len(values), offsets, commit, 0.0, drain=drain,
                        _ack=ack)


def event(n: int) -> bytes:
    return orjson.dumps({**MINIMAL, "event_id": f"e{n}", "ts": T0 + n * 1000, "account_id": "org-1"})


def harvest(n: int = 1500) -> list[bytes]:
    return [orjson.dumps({**MINIMAL, "event_id": f"h{i}", "ts": T0 + i * 400, "account_id": "org-x",
                          "elicits_reasoning": True, "prompt_tokens": 80, "completion_tokens": 2400,
                          "reasoning_tokens": 1500, "prompt_hash": f"{(i + 1) * 0x9E3779B97F4A7C15 % 2**64:016x}"})
            for i in range(n)]
