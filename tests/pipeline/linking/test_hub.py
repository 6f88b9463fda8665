"""Hubs: a template shared by more accounts than its cap links them through itself (N unions, no pairs)."""

from __future__ import annotations

import random
import time
from typing import Any

import orjson
import pytest

from pipeline.linking.checkpoint import MANIFEST_KEY, StateLog, plan_checkpoint
from pipeline.linking.config import LinkingConfig, LinkingConfigError, load_linking_config
from pipeline.linking.feature_keys import tpl_feature
from pipeline.linking.link_state import LinkState
from pipeline.linking.membership import observe
from pipeline.linking.messages import Message, ObservationBatch
from pipeline.linking.pooled import MINUTE_MS, PooledEvidence
from pipeline.linking.stages import ClusterStage, FeatureStage, StageOutput
from tests.support.link_hubs import (
    SRC,
    T0,
    Fleet,
    account_updates,
    benign,
    drain_markers,
    extractor,
    observations,
    pair_card,
    template_fleet,
)


class Run:
    """Stage A and a bounded stage B (alerts evaluated at the drain) over plain dicts."""

    def __init__(self, config: LinkingConfig) -> None:
        self.config = config
        self.features: dict[str, dict[str, object]] = {}
        self.accounts: dict[str, dict[str, Any]] = {}
        self.stage_a = FeatureStage(self.features, config)
        self.stage_b = ClusterStage(config, self.features, self.accounts, {}, drain_sources=[SRC], partitions=1,
                                    defer_alerts=True, pooled=PooledEvidence(config, bounded=True))
        self.outputs: list[StageOutput] = []

    def feed(self, messages: list[Message]) -> None:
        self.outputs.append(self.stage_b.handle(messages))

    def alerts(self) -> list[tuple[str, int]]:
        return sorted((a, int(t)) for out in self.outputs if out.alerts is not None
                      for a, t in zip(out.alerts.account_id, out.alerts.fired_ts_ms.tolist(), strict=True))

    def clusters(self) -> dict[str, tuple[tuple[str, ...], float, tuple[str, ...]]]:
        last: dict[str, tuple[int, tuple[str, ...], float, tuple[str, ...]]] = {}
        for out in self.outputs:
            r = out.rows
            for i, cid in enumerate(r.cluster_id):
                last[cid] = (r.active[i], tuple(r.account_ids[i]), r.score[i], tuple(r.shared_features[i]))
        return {cid: (m, s, f) for cid, (active, m, s, f) in last.items() if active}


def run_fleets(config: LinkingConfig, fleets: list[Fleet], *, obs_chunk: int = 97, obs_seed: int | None = None,
               upd_chunk: int = 500, upd_seed: int | None = None, cards: list[tuple[str, list[str]]] = (),  # type: ignore[assignment]
               scores: dict[str, float] | None = None) -> Run:
    """The fleets' sightings and frames through both stages, then the drain."""
    run = Run(config)
    own = {m: f.own_score for f in fleets for m in f.members} | (scores or {})
    frames = [fr for f in fleets for fr in f.frames] + [fr for name, fr in _card_frames(cards, scores or {})]
    frames.sort(key=lambda fr: (fr[1], fr[0]))
    if upd_seed is not None:
        random.Random(upd_seed).shuffle(frames)
    for card, members in cards:
        run.feed([pair_card(run.features, run.stage_a, card, members, T0 * MINUTE_MS)])
    obs = [run.stage_a.handle(o) for f in fleets for o in observations(f, obs_chunk, obs_seed)]
    updates = account_updates(frames, own, upd_chunk)
    messages: list[Message] = [*obs, *updates]
    if obs_seed is not None:
        random.Random(obs_seed).shuffle(messages)  # the two topics interleave in any order
    for start in range(0, len(messages), 7):
        run.feed(messages[start:start + 7])
    run.feed(drain_markers())
    return run


def _card_frames(cards: list[tuple[str, list[str]]], scores: dict[str, float]) -> list[tuple[str, tuple]]:
    """Frames of the card-linked accounts that are not fleet members: extractors when their score is high."""
    out = []
    for card, members in cards:
        for m in members:
            if m in scores:
                per_minute = extractor(3) if scores[m] >= 50 else benign(2)
                out += [(card, (m, T0 + t, per_minute)) for t in range(90)]
    return out


@pytest.fixture(scope="module")
def fleet_run(config: LinkingConfig) -> Run:
    return run_fleets(config, [template_fleet("fleet", 300, counters=extractor)])


def test_a_template_past_its_cap_becomes_a_hub_and_past_the_hub_cap_popular(config: LinkingConfig) -> None:
    cap, hub_cap = config.kinds["tpl"].cap, 200
    members = [(f"a{i:03d}", 1_000 + i, i % 4) for i in range(hub_cap + 1)]
    first = observe(None, "tpl:0:00ff", members[:cap], config)
    assert first.state is not None and set(first.state["m"]) == {a for a, _, _ in members[:cap]}  # type: ignore[call-overload]
    made = observe(first.state, "tpl:0:00ff", members[cap:cap + 5], config)
    assert made.hub_ts == 1_000 + cap and made.hubbed == [a for a, _, _ in members[:cap]]
    assert made.joined == [a for a, _, _ in members[cap:cap + 5]] and made.state is not None
    assert made.state["c"] in (0, 1, 2, 3) and len(made.state["h"]) == cap + 5  # type: ignore[arg-type]
    doc = config.model_dump()
    doc["kinds"]["tpl"]["hub_cap"] = hub_cap
    small = LinkingConfig.model_validate(doc)
    full = observe(made.state, "tpl:0:00ff", members[cap + 5:hub_cap], small)
    assert len(full.state["h"]) == hub_cap  # type: ignore[index, arg-type]
    over = observe(full.state, "tpl:0:00ff", members[hub_cap:], small)
    assert over.state == {"pop": 1_000 + hub_cap, "n": hub_cap + 1} and len(over.dropped) == hub_cap
    # A card, a network, an ASN or a user agent shared by more is a reseller, a cloud, an SDK: never a hub.
    doc = config.model_dump()
    doc["kinds"]["ip"]["hub_cap"] = 1_000
    with pytest.raises(ValueError, match=r"ip\.hub_cap: only"):
        LinkingConfig.model_validate(doc)
    doc = config.model_dump()
    doc["kinds"]["tpl"]["hub_cap"] = 10
    with pytest.raises(ValueError, match="must exceed its cap"):
        LinkingConfig.model_validate(doc)
    assert not issubclass(LinkingConfigError, type(None)) and load_linking_config().kinds["tpl"].hub_cap == 50_000


def test_a_hub_links_only_the_members_near_its_centre(config: LinkingConfig) -> None:
    cap = config.kinds["tpl"].cap
    features: dict[str, dict[str, object]] = {}
    stage = FeatureStage(features, config)
    links = LinkState(features, config)
    from pipeline.linking.messages import ObservationBatch
    n = cap + 10
    # A band two templates collide in: most members near 0, a few near a far value (16 bits away).
    samples = [0b111 if i % 10 else 0xFFFF << 32 for i in range(n)]
    accounts = [f"m{i:03d}" for i in range(n)]
    changes = stage.handle(ObservationBatch(SRC, 0, ["tpl:0:0000"], accounts, [0] * n, list(range(n)),
                                            list(range(n)), samples))
    for feature, account in changes.joined:
        links.join(feature, account)
    links.relink([m for _, members in changes.hubbed for m in members])
    near = frozenset(a for a, s in zip(accounts, samples, strict=True) if s == 0b111)
    assert set(links.components().values()) == {near} == set(LinkState(features, config).components().values())
    (hub,) = links.hub_links(near)
    assert hub.feature == "tpl:0:0000" and hub.links == len(near) - 1 and hub.weight == config.weight("tpl")
    assert links.pair_evidence(near) == {}  # its pairs are never enumerated
    assert links.label("tpl:0:0000") == f"tpl:0:0000 shared by {len(near)} accounts (hub)"


def _band_feature(sample: int, band: int, config: LinkingConfig) -> str:
    bits = config.template.band_bits
    return tpl_feature((band << bits) | ((sample >> (band * bits)) & ((1 << bits) - 1)), bits)


def test_a_templates_sightings_on_its_other_bands_count_towards_its_cap(config: LinkingConfig) -> None:
    """One template's calls land on whichever of its bands their flipped bits spared: eight accounts seen
    on band 0 and nine on band 1 are seventeen accounts of one template, past the cap of 16."""
    cap, base = config.kinds["tpl"].cap, 0x0123_4567_89AB_CDEF
    assert cap == 16
    on_0 = [(f"a{i:02d}", 1_000 + 2 * i, base ^ (1 << (32 + i))) for i in range(8)]  # a bit of band 2 flipped
    on_1 = [(f"b{i:02d}", 1_001 + 2 * i, base ^ (1 << i)) for i in range(9)]  # band 0's flipped: seen on band 1
    far = [(f"z{i:02d}", 900 + i, base ^ (0xFFFF << 32) ^ (1 << i)) for i in range(3)]  # another template's
    features: dict[str, dict[str, object]] = {}
    stage = FeatureStage(features, config)
    links = LinkState(features, config)
    f0, f1 = _band_feature(base, 0, config), _band_feature(base, 1, config)
    assert _band_feature(far[0][2], 1, config) == f1 and f1 != f0
    changes = []
    for feature, seen in ((f1, far + on_1), (f0, on_0[:7]), (f0, on_0[7:])):
        accounts = [a for a, _, _ in seen]
        changes.append(stage.handle(ObservationBatch(SRC, 0, [feature], accounts, [0] * len(seen),
                                                     list(range(len(seen))), [t for _, t, _ in seen],
                                                     [x for _, _, x in seen])))
    assert changes[1].hubbed == [] and len(changes[1].joined) == 7  # 7 + 9: not past the cap
    hub = features[f0]
    assert "h" in hub, "band 0's eighth account, with band 1's nine, is the template's seventeenth"
    assert set(hub["h"]) == {a for a, _, _ in on_0 + on_1}  # type: ignore[arg-type]  # not the far ones
    assert changes[2].hubbed == [(f0, [a for a, _, _ in on_0[:7]])]
    assert set(changes[2].joined) == {(f0, a) for a, _, _ in on_1} | {(f0, on_0[7][0])}
    for change in changes:
        for feature, account in change.joined:
            links.join(feature, account)
        links.relink([m for _, members in change.hubbed for m in members])
    fleet = frozenset(a for a, _, _ in on_0 + on_1)
    assert fleet in set(links.components().values())
    # Since: the 17th first sighting of the template over both bands, not of band 0 alone.
    assert links.hub_since(f0) == sorted(t for _, t, _ in on_0 + on_1)[cap]
    # Band 1 (9 members and the far three) with a sighting that has band 0 intact: that names band 0's hub,
    # whose centre is near, so band 1 is a hub at once, of the template's first members near that centre.
    late = base ^ (1 << 48)
    stage.handle(ObservationBatch(SRC, 0, [f1], ["c00"], [0], [0], [2_000], [late]))
    assert "h" in features[f1] and {"c00", *fleet} <= set(features[f1]["h"])  # type: ignore[arg-type]
    assert LinkState(features, config).label(f1) == f"{f1} shared by {len(fleet) + 1} accounts (hub)"  # no far one


def test_a_low_volume_fleet_sharing_a_template_is_one_cluster_and_pages_on_its_pooled_evidence(
        fleet_run: Run) -> None:
    members = {f"fleet-{i:05d}" for i in range(300)}
    assert all(f["h"] for f in fleet_run.features.values())  # every band: a hub
    clusters = fleet_run.clusters()
    ((listed_members, score, shared),) = clusters.values()
    assert set(listed_members) == members and score >= 60
    assert shared[0].endswith("shared by 300 accounts (hub)") and len(shared) == 4
    alerts = fleet_run.alerts()
    assert {a for a, _ in alerts} == members  # each quiet alone (own score 8): the cluster's pooled evidence pages
    assert fleet_run.stage_b.stats.hub_features == 0 and fleet_run.stage_a.stats.hub_features == 4


def test_a_template_shared_by_seventeen_quiet_accounts_links_and_pages_them(config: LinkingConfig) -> None:
    # The packaged tpl cap (16) makes a hub of a template's 17th account: a low-and-slow campaign is linked
    # once 17 members were seen on a template (minutes), not 65 (about 45 minutes on the eval's fleet of 200).
    fleet = template_fleet("fleet", 20, counters=extractor)
    run = run_fleets(config, [fleet])
    ((members, score, shared),) = run.clusters().values()
    assert set(members) == set(fleet.members) and score >= 60
    assert shared[0].endswith("shared by 20 accounts (hub)")
    assert {a for a, _ in run.alerts()} == set(fleet.members)
    # Sixteen share it below the cap: a template alone (0.55) is no link, so neither a cluster nor a page.
    below = run_fleets(config, [template_fleet("fleet", 16, counters=extractor)])
    assert below.clusters() == {} and below.alerts() == []


def test_without_hubs_the_same_fleet_is_invisible(config: LinkingConfig) -> None:
    doc = config.model_dump()
    doc["kinds"]["tpl"]["hub_cap"] = None
    run = run_fleets(LinkingConfig.model_validate(doc), [template_fleet("fleet", 300, counters=extractor)])
    assert run.clusters() == {} and run.alerts() == []


def test_a_popular_benign_template_links_its_users_but_pages_nobody_nor_their_other_clusters(
        config: LinkingConfig) -> None:
    users = template_fleet("app", 300, counters=benign, own_score=3.0, every=1, seed=5)
    company = [f"corp-{i}" for i in range(5)]
    distillers = [f"dist-{i}" for i in range(3)]
    scores = dict.fromkeys(company, 3.0) | dict.fromkeys(distillers, 85.0)
    cards = [("pay:corp", ["app-00007", *company]), ("pay:resell", ["app-00011", *distillers])]
    run = run_fleets(config, [users], cards=cards, scores=scores)
    ((members, score, shared),) = run.clusters().values()
    assert set(members) == {*users.members, *company, *distillers} and score >= 60  # the distillers' scores
    assert any(f.endswith("shared by 300 accounts (hub)") for f in shared)
    # The distillers page on their own evidence; the template's users and the company's accounts do not.
    assert {a for a, _ in run.alerts()} == set(distillers)
    alone = run_fleets(config, [users])
    assert len(alone.clusters()) == 1 and alone.alerts() == []


def test_arrival_order_does_not_change_alert_times(config: LinkingConfig, fleet_run: Run) -> None:
    expected = fleet_run.alerts()
    assert len(expected) == 300 and len({t for _, t in expected}) > 1  # members qualify as they join
    rows = {k: v[:2] for k, v in fleet_run.clusters().items()}
    for seed in range(3):
        run = run_fleets(config, [template_fleet("fleet", 300, counters=extractor)], obs_chunk=50 + 31 * seed,
                         obs_seed=seed, upd_chunk=211 + seed, upd_seed=seed)
        assert run.alerts() == expected
        assert {k: v[:2] for k, v in run.clusters().items()} == rows


def test_a_hub_survives_a_checkpoint_in_blocks_of_bounded_size(config: LinkingConfig, fleet_run: Run) -> None:
    big = template_fleet("big", 5_000, counters=extractor, join_spread_s=6_000, minutes=0)
    features: dict[str, dict[str, object]] = {}
    stage = FeatureStage(features, config)
    for obs in observations(big, 997):
        stage.handle(obs)
    sections = {"features": features, "accounts": fleet_run.accounts}
    plan = plan_checkpoint(sections, 3, {"obs:0": 9}, {}, slot_blocks=0, max_bytes=64 << 10)
    assert all(len(v) <= 64 << 10 for _, v in plan.blocks if v is not None)
    hub = next(iter(features))
    assert len(orjson.dumps(features[hub])) > 3 * (64 << 10)  # a hub bigger than a block: cut into pieces
    log = StateLog()
    for key, value in plan.blocks:
        log.add(key, value)
    log.add(MANIFEST_KEY, plan.manifest)
    restored = log.restore()
    assert restored is not None and restored.sections["features"] == orjson.loads(orjson.dumps(features))
    assert restored.sections["accounts"] == orjson.loads(orjson.dumps(fleet_run.accounts))
    again = LinkState(restored.sections["features"], config)
    assert set(again.components().values()) == {frozenset(big.members)}
    assert again.hub_links(frozenset(big.members)) == LinkState(features, config).hub_links(frozenset(big.members))


def test_a_5000_member_hub_is_re_evaluated_without_its_pairs(config: LinkingConfig) -> None:
    """Cost of re-evaluating a cluster of a 5,000-member hub (measured, printed; run with -s to see it)."""
    big = template_fleet("big", 5_000, counters=extractor, every=30, minutes=60, join_spread_s=6_000)
    run = Run(config)
    obs = [run.stage_a.handle(o) for o in observations(big, 4_000)]
    run.feed([*obs, *account_updates(big.frames, dict.fromkeys(big.members, 8.0), 2_000)])
    members = frozenset(big.members)
    links, stage = run.stage_b.links, run.stage_b
    stage.tracker.forget()  # so the re-evaluated cluster is written again
    started = time.perf_counter()
    outcome = stage._evaluate([big.members[0]], final=False)
    evaluate_s = time.perf_counter() - started
    started = time.perf_counter()
    pairs, hubs = links.pair_evidence(members), links.hub_links(members)
    links_s = time.perf_counter() - started
    from pipeline.alerting.cluster_alerts import default_predicate
    from pipeline.linking.alert_time import qualified_since
    started = time.perf_counter()
    since = qualified_since(members, pairs, run.accounts, config, default_predicate(), stage.pooled, hubs)
    since_s = time.perf_counter() - started
    print(f"\n5,000-member hub: re-evaluation {evaluate_s * 1e3:.1f} ms (pairs + hub links {links_s * 1e3:.1f} ms), "
          f"qualified_since {since_s * 1e3:.1f} ms")
    assert pairs == {} and len(hubs) == 4 and all(h.links == 4_999 for h in hubs)
    assert len(outcome.rows) == 1 and outcome.rows.size == [5_000]
    assert set(since) == members
