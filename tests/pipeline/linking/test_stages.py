from __future__ import annotations

import asyncio

import numpy as np

from pipeline.linking.cluster_outputs import RULE_CLUSTER
from pipeline.linking.clusters import cluster_id
from pipeline.linking.config import LinkingConfig
from pipeline.linking.messages import (
    AccountUpdates,
    EdgeBatch,
    EndMarker,
    ObservationBatch,
    decode,
    pack_accounts,
    pack_edges,
    pack_end,
)
from pipeline.linking.publish import LinkPublisher
from pipeline.linking.stages import ClusterStage, FeatureStage, StageOutput
from tests.pipeline.linking.builders import Columns, FakeBroker, fleet_scenario, make_batch

PARTITIONS = 4


class Harness:
    """Detect-side publisher → stage A per partition → stage B, through encoded messages."""

    def __init__(self, config: LinkingConfig, *, defer_alerts: bool = False) -> None:
        self.defer_alerts = defer_alerts
        self.config = config
        self.broker = FakeBroker()
        self.features: dict[str, dict[str, object]] = {}
        self.pairs: dict[str, dict[str, int]] = {}
        self.accounts: dict[str, dict[str, float]] = {}
        self.alerted: dict[str, int] = {}
        self.stage_a = FeatureStage(self.features, config)
        self.stage_b = self.new_stage_b()
        self.publisher = LinkPublisher(config, self.broker.send, observations_topic="obs", edges_topic="edges",
                                       partitions=PARTITIONS, source_id="detect-1")
        self.outputs: list[StageOutput] = []

    def new_stage_b(self) -> ClusterStage:
        return ClusterStage(self.config, self.pairs, self.accounts, self.alerted,
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
        for p in range(PARTITIONS):
            for value in self.broker.take("obs", p):
                msg = decode(value)
                if isinstance(msg, ObservationBatch):
                    edges = self.stage_a.handle(msg, p)
                    if len(edges):
                        self.broker.log.setdefault(("edges", 0), []).extend(pack_edges(edges))
                elif isinstance(msg, EndMarker):
                    self.broker.log.setdefault(("edges", 0), []).append(pack_end(msg.src, p))
        out = self.stage_b.handle([decode(v) for v in self.broker.take("edges", 0)])
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


def test_hydra_fleet_becomes_one_alerting_cluster_and_hard_negatives_stay_apart(config: LinkingConfig) -> None:
    h = run_fleet(config)
    clusters = h.clusters()
    fleet = tuple(sorted(f"fleet-{i}" for i in range(10)))
    assert set(clusters) == {cluster_id(fleet), cluster_id(["sib-a", "sib-b"])}
    members, score = clusters[cluster_id(fleet)]
    assert members == fleet
    assert score > 0  # quiet members (35 each), flagged as a whole by the cluster rule
    assert sorted(h.alerts()) == [(m, RULE_CLUSTER) for m in fleet]
    # One campaign: every member's alert and page carries the fleet's cluster id.
    assert {c for o in h.outputs if o.alerts is not None for c in o.alerts.cluster_id} == {cluster_id(fleet)}
    pages = [t for o in h.outputs for t in o.transitions]
    assert sorted(t.labels["account_id"] for t in pages) == list(fleet)
    assert {(t.state, t.labels["cluster_id"], t.labels["alertname"]) for t in pages} == \
        {("firing", cluster_id(fleet), RULE_CLUSTER)}
    # What the detect step's account alerts read for their cluster_id label.
    assert {h.stage_b.cluster_ids[m] for m in fleet} == {cluster_id(fleet)}
    alert = next(o.alerts for o in h.outputs if o.alerts is not None and len(o.alerts))
    assert any(s.startswith("pay:") for s in alert.signals[0]) and any(s.startswith("tpl:") for s in alert.signals[0])


def test_siblings_sharing_a_card_form_a_small_low_score_cluster(config: LinkingConfig) -> None:
    members, score = run_fleet(config).clusters()[cluster_id(["sib-a", "sib-b"])]
    assert members == ("sib-a", "sib-b")
    assert score < 40


def test_stage_b_drains_after_every_partitions_marker_once(config: LinkingConfig) -> None:
    h = run_fleet(config)
    drained = [o.drained for o in h.outputs]
    assert drained == [False, False, True] and h.stage_b.drained
    # Every observations partition's marker, forwarded by stage A, and the edges topic's own.
    assert h.stage_b.markers == {("detect-1", p) for p in [*range(PARTITIONS), None]}
    h.broker.log[("edges", 0)] = [pack_end("detect-1", 0)]  # a marker re-read after a rebalance
    assert not h.pump().drained


def test_drain_waits_for_every_partition_of_every_drain_source(config: LinkingConfig) -> None:
    stage = ClusterStage(config, {}, {}, {}, drain_sources=["w1", "w2"], partitions=PARTITIONS)
    ends = [decode(pack_end(src, p)) for src in ("w1", "w2") for p in [*range(PARTITIONS), None]]
    assert not stage.handle(ends[:PARTITIONS + 1] + ends[:2]).drained
    assert not stage.handle(ends[PARTITIONS + 1:-1]).drained  # w2's edges marker still missing
    assert stage.handle(ends[-1:]).drained


def test_another_workers_markers_never_end_this_workers_drain(config: LinkingConfig) -> None:
    # Two bounded workers in one group: the linking process sees both sources'
    # markers. Those of the other source, however many, must not close this one's barrier early.
    stage = ClusterStage(config, {}, {}, {}, drain_sources=["mine"], partitions=PARTITIONS)
    theirs = [decode(pack_end("theirs", p)) for p in [*range(PARTITIONS), None]]
    mine = [decode(pack_end("mine", p)) for p in [*range(PARTITIONS), None]]
    assert not stage.handle(theirs + mine[:-1]).drained
    assert stage.handle(mine[-1:]).drained


def test_popular_features_do_not_link_everything(config: LinkingConfig) -> None:
    # 80 accounts behind one big cloud /24, one ASN, one SDK and even one reseller's card.
    n = 80
    h = Harness(config)
    names = [f"org-{i:02d}" for i in range(n)]
    common = {"ip": ["3.80.1.1"] * n, "asn": [16509] * n, "ua": ["OpenAI/Python 1.40.0"] * n, "pay": ["pf_x"] * n}
    h.publish(make_batch(names[:40], **{k: v[:40] for k, v in common.items()}), dict.fromkeys(names, 50.0))
    h.pump()
    assert len(h.clusters()) == 1  # 40 accounts on one card: linked, for now
    h.publish(make_batch(names[40:], **{k: v[40:] for k, v in common.items()}), dict.fromkeys(names, 50.0))
    h.pump()
    assert h.clusters() == {}  # the card became popular: its links were withdrawn, the cluster retired
    assert h.pairs == {} and not h.stage_b.graph.linked
    assert {f.partition(":")[0] for f, s in h.features.items() if "pop" in s} == {"pay", "ip24", "asn", "ua"}


def test_restarted_stage_b_rewrites_clusters_without_realerting(config: LinkingConfig) -> None:
    h = run_fleet(config)
    before = h.clusters()
    h.stage_b = h.new_stage_b()  # recovered tables, fresh process
    h.outputs = []
    out = h.pump()
    assert h.clusters() == before
    assert out.alerts is not None and len(out.alerts) == 0


def test_account_updates_track_latest_and_max_scores(config: LinkingConfig) -> None:
    h = Harness(config)
    batch = make_batch(["a", "a", "b"], ts=[60_000, 61_000, 62_000])
    h.publish(batch, {"a": 40.0, "b": 5.0})
    h.publish(make_batch(["a"], ts=[200_000]), {"a": 20.0})
    h.pump()
    assert h.accounts["a"]["calls"] == 3 and h.accounts["a"]["max"] == 40.0 and h.accounts["a"]["score"] == 20.0
    assert h.accounts["b"]["calls"] == 1


def _concat(batches: list[Columns]) -> Columns:
    raw = {k: np.concatenate([np.asarray(b.raw[k]) for b in batches]) for k in batches[0].raw}
    return Columns([a for b in batches for a in b.account_ids],
                   {k: v.tolist() if v.dtype.kind == "U" else v for k, v in raw.items()})


def test_deferred_alerts_fire_at_the_drain_with_times_that_ignore_batching(config: LinkingConfig) -> None:
    batches, _ = fleet_scenario()
    # Frames close at the same event time however the input is batched (as the detector's do).
    split = run_fleet(config, batches, defer_alerts=True, frame_minute=5)
    whole = run_fleet(config, [_concat(batches)], defer_alerts=True, frame_minute=5)
    assert [len(o.alerts) if o.alerts is not None else 0 for o in split.outputs] == [0, 0, 10]
    assert split.alert_times() == whole.alert_times() and len(split.alert_times()) == 10
    assert split.clusters() == whole.clusters()


def test_big_edge_and_account_messages_are_split_and_decode_to_the_same_rows() -> None:
    n = 23
    edges = EdgeBatch(2, a=[f"a{i}" for i in range(n)], b=[f"b{i}" for i in range(n)], feature=["pay:x"] * n,
                      ts=list(range(n)), popular=["asn:1"], popular_ts=[5])
    parts = [decode(v) for v in pack_edges(edges, max_rows=5)]
    assert len(parts) == 5 and all(isinstance(m, EdgeBatch) and len(m.a) <= 5 for m in parts)
    assert [x for m in parts for x in m.a] == edges.a and [x for m in parts for x in m.ts] == edges.ts  # type: ignore[union-attr]
    assert [m.popular for m in parts] == [["asn:1"], [], [], [], []]  # type: ignore[union-attr]
    assert len(pack_edges(EdgeBatch(0, popular=["ua:1"], popular_ts=[1]))) == 1

    updates = AccountUpdates("src", [f"org-{i}" for i in range(n)], list(range(n)), list(range(n)),
                             [1.0] * n, [2.0] * n, [None] * n, [None] * n)
    msgs = [decode(v) for v in pack_accounts(updates, max_rows=10)]
    assert [len(m) for m in msgs] == [10, 10, 3]  # type: ignore[arg-type]
    assert [a for m in msgs for a in m.account] == updates.account  # type: ignore[union-attr]
    assert pack_accounts(AccountUpdates("src", [], [], [], [], [], [], [])) == []


def test_stage_b_reports_each_accounts_cluster_change_once(config: LinkingConfig) -> None:
    stage = ClusterStage(config, {}, {}, {}, drain_sources=[], partitions=PARTITIONS)
    stage.handle([EdgeBatch(0, a=["a"], b=["b"], feature=["pay:x"], ts=[5])])
    assert stage.take_cluster_changes() == {"a": cluster_id(["a", "b"]), "b": cluster_id(["a", "b"])}
    stage.handle([EdgeBatch(0, a=["a"], b=["b"], feature=["pay:x"], ts=[6])])
    assert stage.take_cluster_changes() == {}  # same cluster: nothing to tell
    stage.handle([EdgeBatch(0, popular=["pay:x"], popular_ts=[7])])  # the only evidence retracted
    assert stage.take_cluster_changes() == {"a": "", "b": ""}
