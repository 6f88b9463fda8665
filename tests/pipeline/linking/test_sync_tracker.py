"""Timing evidence end to end: account updates → ring → boundaries → ``sync:`` features → clusters and alerts."""

from __future__ import annotations

import asyncio
from typing import NamedTuple

import numpy as np
import orjson
import pytest
from aiokafka import TopicPartition

from pipeline.linking.checkpoint import MANIFEST_KEY, StateLog, plan_checkpoint
from pipeline.linking.cluster_outputs import RULE_CLUSTER
from pipeline.linking.config import LinkingConfig
from pipeline.linking.link_state import LinkState
from pipeline.linking.messages import ObservationBatch, pack_end
from pipeline.linking.process import LinkingProcess
from pipeline.linking.publish import LinkPublisher
from pipeline.linking.stages import FeatureStage
from pipeline.linking.sync_tracker import MINUTE_MS, SyncTracker, sample_window, unpack_sample
from pipeline.linking.topics import LinkTopics
from pipeline.settings import load_settings
from tests.pipeline.linking.sync_data import (
    START_MINUTE,
    cron_crowd,
    encoded,
    independent,
    round_robin_fleet,
    updates,
    waves_fleet,
)
from tests.support.link_builders import FakeBroker, make_batch

TOPICS = LinkTopics.for_group("sync")
PARTITIONS = 2


class Record(NamedTuple):
    offset: int
    value: bytes


def observed(tracker: SyncTracker, messages: list, flush: bool = False) -> list[ObservationBatch]:  # type: ignore[type-arg]
    out = [obs for u in messages for obs in tracker.handle(u)]
    return out + (tracker.flush() if flush else [])


def summary(batches: list[ObservationBatch]) -> list[tuple[int, list[tuple[str, str, int, int]]]]:
    return [(b.seq, sorted(zip([b.features[f] for f in b.f], b.accounts, b.ts, b.sample, strict=True)))
            for b in batches]


def fleet_and_crowd(seed: int, minutes: int = 150) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    counts = np.vstack([round_robin_fleet(rng, 8, minutes, 5.0), independent(rng, 60, minutes),
                        cron_crowd(rng, 30, minutes, 5)])
    return [f"fleet-{i}" for i in range(8)] + [f"other-{i}" for i in range(90)], counts


def first_chance(config: LinkingConfig) -> int:
    """The first boundary comparing accounts whose frames begin at START_MINUTE: known for min_known_minutes."""
    early = config.sync.scales()[0]
    return -(-(START_MINUTE + early.known_minutes) // early.step_minutes) * early.step_minutes


def test_boundaries_are_aligned_for_everyone_and_evaluated_once_settled(config: LinkingConfig) -> None:
    sync = config.sync
    names, counts = fleet_and_crowd(1)
    tracker = SyncTracker(config, {})
    seen: list[tuple[int, int]] = []  # (minute of the message that made a boundary due, boundary)
    for minute, u in enumerate(updates(names, counts)):
        seen += [(START_MINUTE + minute, obs.seq) for obs in tracker.handle(u)]
    early = sync.early
    assert early is not None and tracker.step == early.step_minutes
    assert seen and all(b % early.step_minutes == 0 and m == b + sync.settle_minutes for m, b in seen)
    # Nobody is compared before the ring knows them min_known_minutes; the fleet is found at the first chance
    # (over the minutes known, the crowd's 5-minute cron seen as one), and the main window continues its feature.
    assert first_chance(config) < START_MINUTE + early.window_minutes
    assert seen[0][1] == first_chance(config)
    # Every boundary from the first frame's on was evaluated (those before min_known_minutes: nobody eligible).
    assert tracker.totals.boundaries == (150 - 1 - sync.settle_minutes) // early.step_minutes
    batches = observed(SyncTracker(config, {}), updates(names, counts))
    batch = batches[0]
    assert set(batch.accounts) == {f"fleet-{i}" for i in range(8)} and len(set(batch.features)) == 1
    assert set(batch.ts) == {batch.seq * MINUTE_MS}
    r, active = unpack_sample(batch.sample[0])
    assert r >= early.min_r and early.min_active_minutes <= active <= early.window_minutes
    assert {sample_window(s) for s in batch.sample} == {early.window_minutes}
    main = next(b for b in batches if b.seq == START_MINUTE + sync.window_minutes)
    assert set(main.features) == set(batch.features) and len(main.accounts) == len(set(main.accounts)) == 8
    assert {sample_window(s) for s in main.sample} == {sync.window_minutes}  # the longer window's, once


def test_the_same_frames_give_the_same_evidence_however_they_are_cut_or_resent(config: LinkingConfig) -> None:
    names, counts = fleet_and_crowd(2)
    per_minute = summary(observed(SyncTracker(config, {}), updates(names, counts), flush=True))
    assert per_minute
    for per_message in (3, 4):  # up to the settle time apart: the same frames are in when a boundary is due
        cut = summary(observed(SyncTracker(config, {}), updates(names, counts, per_message=per_message),
                               flush=True))
        assert cut == per_minute
    twice = [u for u in updates(names, counts) for _ in range(2)]  # every batch re-read after a crash
    assert summary(observed(SyncTracker(config, {}), twice, flush=True)) == per_minute


def _sync_beyond_the_cap(config: LinkingConfig) -> tuple[dict[str, dict[str, object]], SyncTracker, list[str]]:
    rng = np.random.default_rng(4)
    cap = config.kinds["sync"].cap
    big = round_robin_fleet(rng, cap + 20, 100, 4.0)  # one curve followed by more accounts than the cap
    small = round_robin_fleet(rng, 6, 100, 6.0)
    crowd = [f"crowd-{i}" for i in range(cap + 20)]
    names = crowd + [f"fleet-{i}" for i in range(6)]
    features: dict[str, dict[str, object]] = {}
    tracker = SyncTracker(config, features)
    stage_a = FeatureStage(features, config)
    for u in updates(names, np.vstack([big, small])):
        for obs in tracker.handle(u):  # as the linking process does: stage A at once
            stage_a.handle(obs)
    return features, tracker, crowd


def test_a_group_continues_its_feature_and_a_pattern_beyond_the_hub_cap_is_popular(config: LinkingConfig) -> None:
    doc = config.model_dump()
    doc["kinds"]["sync"]["hub_cap"] = None  # no hub: popular at the cap
    no_hub = LinkingConfig.model_validate(doc)
    cap = config.kinds["sync"].cap
    features, tracker, _ = _sync_beyond_the_cap(no_hub)
    sync_features = {f: state for f, state in features.items() if f.startswith("sync:")}
    assert len(sync_features) == 2  # each group kept one feature over every boundary
    popular = [state for state in sync_features.values() if "pop" in state]
    assert popular == [{"pop": first_chance(config) * MINUTE_MS, "n": cap + 1}]  # found at the first chance
    assert tracker.totals.popular_groups >= 2  # later boundaries found the crowd again and dropped it
    links = LinkState(features, no_hub)
    assert set(links.components()) == {f"fleet-{i}" for i in range(6)}


def test_a_pattern_beyond_the_cap_is_a_hub_linking_its_members(config: LinkingConfig) -> None:
    features, tracker, crowd = _sync_beyond_the_cap(config)
    sync_features = {f: state for f, state in features.items() if f.startswith("sync:")}
    assert len(sync_features) == 2 and tracker.totals.popular_groups == 0
    (hub,) = [f for f, state in sync_features.items() if "h" in state]
    assert set(features[hub]["h"]) == set(crowd)  # type: ignore[call-overload]
    links = LinkState(features, config)
    groups = set(links.components().values())
    assert groups == {frozenset(crowd), frozenset(f"fleet-{i}" for i in range(6))}
    assert links.label(hub).startswith(f"{hub} shared by {len(crowd)} accounts (hub) (calls per minute correlate r=")


def checkpointed(process: LinkingProcess) -> LinkingProcess:
    """A new process restored from ``process``'s checkpoint, as a takeover would."""
    log = StateLog()
    plan = plan_checkpoint(process.sections(), 1, {}, process.checkpoint_meta(), slot_blocks=0, max_bytes=8_192)
    for key, value in plan.blocks:
        log.add(key, value)
    log.add(MANIFEST_KEY, plan.manifest)
    restored = log.restore()
    assert restored is not None
    other = LinkingProcess(load_settings(), bounded=process.bounded, drain_sources=["detect-1"], topics=TOPICS,
                           config=process.config)
    other.restore(restored)
    other.init_stage_b(PARTITIONS)
    return other


def edges(values: list[bytes], first_offset: int = 0) -> dict[TopicPartition, list[Record]]:
    return {TopicPartition(TOPICS.edges, 0): [Record(first_offset + i, v) for i, v in enumerate(values)]}


@pytest.mark.parametrize("bounded", [False, True])
def test_a_restored_ring_continues_as_if_never_stopped(config: LinkingConfig, bounded: bool) -> None:
    rng = np.random.default_rng(5)
    counts = np.vstack([waves_fleet(rng, 10, 180, 12.0), independent(rng, 100, 180)])
    names = [f"fleet-{i}" for i in range(10)] + [f"other-{i}" for i in range(100)]
    values = [*encoded(names, counts, per_message=2), *([pack_end("detect-1")] if bounded else [])]
    whole = LinkingProcess(load_settings(), bounded=bounded, drain_sources=["detect-1"], topics=TOPICS, config=config)
    whole.init_stage_b(PARTITIONS)
    whole.apply_fetch(edges(values))
    first = LinkingProcess(load_settings(), bounded=bounded, drain_sources=["detect-1"], topics=TOPICS, config=config)
    first.init_stage_b(PARTITIONS)
    half = len(values) // 2 + 1  # mid-window: the ring holds minutes no boundary has used yet
    first.apply_fetch(edges(values[:half]))
    # Live, boundaries are evaluated as frames come; bounded, all of them wait for the drain.
    assert first.sync.ring.section() and bool(first.sync.totals.groups) != bounded
    second = checkpointed(first)
    assert second.sync.ring.section() == first.sync.ring.section()
    assert second.sync.clock() == first.sync.clock() and second.sync.member_of == first.sync.member_of
    second.apply_fetch(edges(values[half:], half))
    assert whole.features == second.features and any(f.startswith("sync:") for f in whole.features)
    assert whole.sync.ring.section() == second.sync.ring.section()


def test_a_bounded_run_gives_the_same_evidence_however_its_partitions_interleave(config: LinkingConfig) -> None:
    """Two detect partitions, one running 30 minutes of event time ahead of the other (a replay does that):
    live, a boundary is evaluated once the leading partition is past it, before the lagging one's frames
    are in; bounded, every boundary waits for them (or the drain), so the evidence is the in-order run's."""
    names, counts = fleet_and_crowd(3)
    lead, lag = updates(names[::2], counts[::2]), updates(names[1::2], counts[1::2])
    skewed = [*lead[:30], *[u for pair in zip(lead[30:], lag, strict=False) for u in pair], *lag[len(lead) - 30:]]
    in_order = [u for pair in zip(lead, lag, strict=True) for u in pair]
    expected = summary(observed(SyncTracker(config, {}, bounded=True), in_order, flush=True))
    assert expected and summary(observed(SyncTracker(config, {}), in_order, flush=True)) == expected
    assert summary(observed(SyncTracker(config, {}, bounded=True), skewed, flush=True)) == expected
    assert summary(observed(SyncTracker(config, {}), skewed, flush=True)) != expected
    # Bounded, nothing is evaluated before the drain (a day of later frames would be needed).
    assert observed(SyncTracker(config, {}, bounded=True), skewed) == []


def test_a_fleet_linked_by_timing_pages_and_a_companys_lock_step_accounts_link_without_paging(
        config: LinkingConfig) -> None:
    rng = np.random.default_rng(6)
    minutes = 150
    fleet = [f"fleet-{i}" for i in range(10)]  # one campaign, nothing else shared
    company = [f"corp-{i}" for i in range(6)]  # one scheduler dealing one company's work, on its card
    others = [f"other-{i}" for i in range(150)]
    counts = np.vstack([round_robin_fleet(rng, 10, minutes, 6.0), round_robin_fleet(rng, 6, minutes, 5.0),
                        independent(rng, 150, minutes)])
    scores = {**dict.fromkeys(fleet, 45.0), **dict.fromkeys(company, 5.0), **dict.fromkeys(others, 10.0)}
    broker = FakeBroker()
    publisher = LinkPublisher(config, broker.send, observations_topic=TOPICS.observations, edges_topic=TOPICS.edges,
                              partitions=PARTITIONS, source_id="detect-1")
    card = make_batch(company, pay=["pf_corp"] * 6, ts=[START_MINUTE * MINUTE_MS] * 6)
    asyncio.run(publisher.send(publisher.prepare(card, [], np.empty(0), np.empty(0), {})))
    fetched = {TopicPartition(TOPICS.observations, p): [Record(i, v) for i, v in enumerate(
        [*broker.log.get((TOPICS.observations, p), []), pack_end("detect-1")])] for p in range(PARTITIONS)}
    fetched.update(edges([*encoded([*fleet, *company, *others], counts, per_message=5, scores=scores),
                          pack_end("detect-1")]))
    process = LinkingProcess(load_settings(), bounded=True, drain_sources=["detect-1"], topics=TOPICS, config=config)
    process.init_stage_b(PARTITIONS)
    out = process.apply_fetch(fetched)
    assert out.drained
    rows = {tuple(members): features for members, features, active in
            zip(out.rows.account_ids, out.rows.shared_features, out.rows.active, strict=True) if active}
    assert set(rows) == {tuple(fleet), tuple(company)}  # nobody else: 150 accounts on one daily curve
    (label,) = rows[tuple(fleet)]
    assert label.startswith("sync:")
    r = float(label.split("r=")[1].split()[0])
    assert r >= config.sync.min_r
    # Members keep the sample of the boundary that grouped them first: the early window's.
    first_window = config.sync.scales()[0].window_minutes
    assert label.endswith(f"calls per minute correlate r={r:.2f} over {first_window} minutes, 10 accounts)")
    assert {f.split(" ")[0].split(":")[0] for f in rows[tuple(company)]} == {"pay", "sync"}
    assert out.alerts is not None
    assert sorted(zip(out.alerts.account_id, out.alerts.rule, strict=True)) == [(a, RULE_CLUSTER) for a in fleet]
    assert any(s.startswith("sync:") for s in out.alerts.signals[0])
    assert process.stats_dict()["sync_groups"] >= 2


def test_frames_of_an_older_worker_bring_no_timing_evidence(config: LinkingConfig) -> None:
    """A version-1 account update (no frame columns) is read; the tracker just sees no frames."""
    v1 = orjson.dumps({"v": 1, "type": "accounts", "src": "old", "account": ["a"], "calls": [3], "ts": [5],
                       "score": [1.0], "max_score": [1.0], "best": [1.0], "best_ts": [5]})
    process = LinkingProcess(load_settings(), bounded=False, drain_sources=[], topics=TOPICS, config=config)
    process.init_stage_b(PARTITIONS)
    process.apply_fetch(edges([v1]))
    assert process.stats.bad_messages == 0 and process.stats.account_updates == 1
    assert process.accounts["a"]["calls"] == 3 and len(process.sync.ring) == 0
