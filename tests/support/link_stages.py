"""Both linking stages in one process, fed through encoded messages: the stage tests' harness."""

from __future__ import annotations

import asyncio

import numpy as np

from pipeline.linking.config import LinkingConfig
from pipeline.linking.messages import EndMarker, Message, ObservationBatch, decode
from pipeline.linking.publish import LinkPublisher
from pipeline.linking.stages import ClusterStage, FeatureStage, StageOutput
from tests.support.link_builders import Columns, FakeBroker, fleet_scenario

PARTITIONS = 4


class Harness:
    """Detect-side publisher → stage A per partition → stage B, through encoded messages."""

    def __init__(self, config: LinkingConfig, *, defer_alerts: bool = False) -> None:
        self.defer_alerts = defer_alerts
        self.config = config
        self.broker = FakeBroker()
        self.features: dict[str, dict[str, object]] = {}
        self.accounts: dict[str, dict[str, float]] = {}
        self.alerted: dict[str, int] = {}
        self.stage_a = FeatureStage(self.features, config)
        self.stage_b = self.new_stage_b()
        self.publisher = LinkPublisher(config, self.broker.send, observations_topic="obs", edges_topic="edges",
                                       partitions=PARTITIONS, source_id="detect-1")
        self.outputs: list[StageOutput] = []

    def new_stage_b(self) -> ClusterStage:
        return ClusterStage(self.config, self.features, self.accounts, self.alerted,
                            drain_sources=["detect-1"], partitions=PARTITIONS, defer_alerts=self.defer_alerts)

    def publish(self, batch: Columns, scores: dict[str, float], *, drain: bool = False,
                frame_minute: int | None = None) -> None:
        """Publish a batch with one closed frame per account, at ``frame_minute`` or the batch's last minute."""
        accounts = sorted(set(batch.account_ids))
        if frame_minute is None:
            frame_minute = int(np.asarray(batch.raw["ts"]).max(initial=0)) // 60_000
        prepared = self.publisher.prepare(batch, accounts, np.full(len(accounts), frame_minute * 60),
                                          np.array([scores[a] for a in accounts]), scores)
        asyncio.run(self.publisher.send(prepared, drain=drain))

    def pump(self) -> StageOutput:
        """The edges topic's messages, then stage A's changes and markers per partition, in one stage B call."""
        to_b: list[Message] = [decode(v) for v in self.broker.take("edges", 0)]
        for p in range(PARTITIONS):
            for value in self.broker.take("obs", p):
                msg = decode(value)
                if isinstance(msg, ObservationBatch):
                    to_b.append(self.stage_a.handle(msg))
                elif isinstance(msg, EndMarker):
                    to_b.append(EndMarker(msg.src, p))
        out = self.stage_b.handle(to_b)
        self.outputs.append(out)
        return out

    def clusters(self) -> dict[str, tuple[tuple[str, ...], float]]:
        """Active clusters as the ClickHouse table would hold them: last row per id."""
        last: dict[str, tuple[int, tuple[str, ...], float]] = {}
        for out in self.outputs:
            rows = out.rows
            for i, cid in enumerate(rows.cluster_id):
                last[cid] = (rows.active[i], tuple(rows.account_ids[i]), rows.score[i])
        return {cid: (members, score) for cid, (active, members, score) in last.items() if active}

    def alerts(self) -> list[tuple[str, str]]:
        return [(a, rule) for out in self.outputs if out.alerts is not None
                for a, rule in zip(out.alerts.account_id, out.alerts.rule, strict=True)]

    def alert_times(self) -> list[tuple[str, int]]:
        return sorted((a, int(t)) for out in self.outputs if out.alerts is not None
                      for a, t in zip(out.alerts.account_id, out.alerts.fired_ts_ms.tolist(), strict=True))


def run_fleet(config: LinkingConfig, batches: list[Columns] | None = None, *, defer_alerts: bool = False,
              frame_minute: int | None = None) -> Harness:
    default, scores = fleet_scenario()
    batches = batches or default
    h = Harness(config, defer_alerts=defer_alerts)
    for i, batch in enumerate(batches):
        h.publish(batch, scores, drain=i == len(batches) - 1, frame_minute=frame_minute)
        h.pump()
    return h
