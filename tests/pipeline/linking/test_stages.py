from __future__ import annotations

import numpy as np

from pipeline.linking.cluster_outputs import RULE_CLUSTER
from pipeline.linking.clusters import cluster_id
from pipeline.linking.config import LinkingConfig
from pipeline.linking.messages import (
    AccountUpdates,
    decode,
    pack_accounts,
    pack_end,
)
from pipeline.linking.stages import ClusterStage
from tests.support.link_builders import Columns, fleet_scenario, make_batch, share
from tests.support.link_stages import PARTITIONS, Harness, run_fleet


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
    assert not any(h.stage_b.links.linked(a) for a in names)
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


def test_big_account_messages_are_split_and_decode_to_the_same_rows() -> None:
    n = 23
    updates = AccountUpdates("src", [f"org-{i}" for i in range(n)], list(range(n)), list(range(n)),
                             [1.0] * n, [2.0] * n, [None] * n, [None] * n)
    msgs = [decode(v) for v in pack_accounts(updates, max_rows=10)]
    assert [len(m) for m in msgs] == [10, 10, 3]  # type: ignore[arg-type]
    assert [a for m in msgs for a in m.account] == updates.account  # type: ignore[union-attr]
    assert pack_accounts(AccountUpdates("src", [], [], [], [], [], [], [])) == []


def test_stage_b_reports_each_accounts_cluster_change_once(config: LinkingConfig) -> None:
    features: dict[str, dict[str, object]] = {}
    stage = ClusterStage(config, features, {}, {}, drain_sources=[], partitions=PARTITIONS)
    stage.handle([share(features, "pay:x", ["a", "b"], 5, config)])
    assert stage.take_cluster_changes() == {"a": cluster_id(["a", "b"]), "b": cluster_id(["a", "b"])}
    stage.handle([share(features, "pay:x", ["a", "b"], 6, config)])
    assert stage.take_cluster_changes() == {}  # same cluster: nothing to tell
    cap = config.kinds["pay"].cap
    stage.handle([share(features, "pay:x", [f"z{i}" for i in range(cap - 1)], 7, config)])  # the card is popular
    assert stage.take_cluster_changes() == {"a": "", "b": ""}
