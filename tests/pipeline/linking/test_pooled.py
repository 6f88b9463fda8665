"""Pooled cluster evidence: what a cluster's members take together, scored with the scoring's own ratio signals."""

from __future__ import annotations

import random

import numpy as np
import orjson
import pytest

from jobs.backtest_clusters import _History, facts_of
from pipeline.alerting.cluster_alerts import default_predicate
from pipeline.linking.alert_time import qualified_since
from pipeline.linking.cluster_outputs import ClusterTracker
from pipeline.linking.clusters import describe_cluster, score_cluster
from pipeline.linking.config import LinkingConfig, load_linking_config
from pipeline.linking.messages import FRAME_COUNTERS, AccountUpdates, decode, pack_accounts
from pipeline.linking.pooled import MINUTE_MS, POOLED, PooledEvidence, PooledScore, PooledScorer
from pipeline.scoring.config import load_scoring_config

T0 = 29_000_000  # epoch minute of the first frame
Frame = tuple[str, int, tuple[int, ...]]  # account, minute, POOLED counters


@pytest.fixture(scope="module")
def config() -> LinkingConfig:
    return load_linking_config()


def extractor(calls: int) -> tuple[int, ...]:
    """A chain-of-thought harvester's minute: short prompts, long answers, reasoning asked for on most calls."""
    return (calls, 150 * calls, 700 * calls, 900 * calls, calls, 0, 0)


def benign(calls: int) -> tuple[int, ...]:
    """A customer's app: long prompts, short answers, little reasoning."""
    return (calls, 1200 * calls, 300 * calls, 0, 0, 0, 0)


def updates(frames: list[Frame], src: str = "w") -> AccountUpdates:
    names = sorted({a for a, _, _ in frames})
    code = {a: i for i, a in enumerate(names)}
    cols = np.asarray([c for _, _, c in frames], np.int64).reshape(len(frames), len(POOLED))
    n = len(names)
    return AccountUpdates(src, names, [0] * n, [0] * n, [None] * n, [None] * n, [None] * n, [None] * n,
                          [code[a] for a, _, _ in frames], [m for _, m, _ in frames], cols[:, 0].tolist(),
                          {name: cols[:, i + 1].tolist() for i, name in enumerate(FRAME_COUNTERS)})


def evidence(config: LinkingConfig, frames: list[Frame], chunk: int = 500) -> PooledEvidence:
    pooled = PooledEvidence(config)
    for start in range(0, len(frames), chunk):
        pooled.handle(updates(frames[start:start + chunk]))
    return pooled


def card(members: list[str], ts: int) -> dict[tuple[str, str], dict[str, int]]:
    """One payment card links them all (a star through the first member is enough for the union-find)."""
    return {(members[0], m): {"pay:card": ts} for m in members[1:]}


def quiet_fleet(minutes: int = 40) -> tuple[list[str], list[Frame]]:
    """Twelve members, one call every five minutes each: alone, each is under the volume gate (8 calls taking
    12,800 tokens in 40 minutes: the calls' ramp starts at 5 calls, the tokens' at 10,000)."""
    members = [f"hydra-{i:02d}" for i in range(12)]
    frames = [(m, T0 + t, extractor(1)) for t in range(minutes) for i, m in enumerate(members) if (t + i) % 5 == 0]
    return members, frames


def reference_since(members: list[str], pooled: PooledEvidence, scores: dict[str, float], config: LinkingConfig,
                    linked_at: int) -> dict[str, int]:
    """The first minute end at which the cluster, scored by the scalar path (describe's), met the rule."""
    holds = default_predicate()
    out: dict[str, int] = {}
    for minute in range(T0, pooled.newest + 2):
        ts = max(minute * MINUTE_MS, linked_at)
        score = score_cluster(len(members), [scores[m] for m in members], [1.0] * (len(members) - 1), 0.0,
                              config.cluster, pooled.at(members, ts))
        values = {"score": score.score, "size": len(members), **score.members, "calls": 0.0}
        for m, ok in zip(members, holds(values, [scores[m] for m in members]).tolist(), strict=True):
            if ok:
                out.setdefault(m, ts)
    return out


def test_the_pooled_signals_are_the_scoring_configs_ratio_signals_derived_not_listed() -> None:
    scorer = PooledScorer()
    # Ratios of the counters the account updates carry: computable from pooled sums.
    assert set(scorer.signals) == {"reasoning_elicitation", "reasoning_volume", "output_harvest", "reasoning_take",
                                   "distribution_probing", "rate_limit_pressure"}
    # Distinct counts, gaps, activity and counters not carried (wide bias, near duplicates) are not.
    assert not {"template_sweep", "machine_regularity", "logit_stealing", "rotating_exits"} & set(scorer.signals)
    # A config whose signal reads a carried ratio under a new name pools it too: derived from the config.
    doc = load_scoring_config().model_dump()
    doc["signals"]["new_ratio"] = {"weight": 10, "ramps": {"logprob_share": {"low": 0.1, "high": 0.2}},
                                   "why": "x"}
    assert "new_ratio" not in PooledScorer(type(load_scoring_config())(**doc)).signals  # logprob_calls not carried
    doc["signals"]["new_ratio"]["ramps"] = {"take_ratio": {"low": 0.1, "high": 0.2}}
    assert "new_ratio" in PooledScorer(type(load_scoring_config())(**doc)).signals


def test_a_quiet_fleet_qualifies_when_its_pooled_traffic_shows_extraction(config: LinkingConfig) -> None:
    members, frames = quiet_fleet()
    pooled = evidence(config, frames)
    end = (T0 + 40) * MINUTE_MS
    assert all(pooled.at([m], end).score < 20 for m in members)  # each alone: under the volume gate
    together = pooled.at(members, end)
    assert together.score >= 60 and together.members == 12 and together.calls == 96
    scores = dict.fromkeys(members, 8.0)  # their own max scores: quiet
    accounts = {m: {"calls": 20, "steps": [[T0 * MINUTE_MS + MINUTE_MS, 8.0]]} for m in members}
    linked_at = T0 * MINUTE_MS + 30_000
    since = qualified_since(members, card(members, linked_at), accounts, config, pooled=pooled)
    assert since == reference_since(members, pooled, scores, config, linked_at)
    assert set(since) == set(members)
    first = min(since.values())
    # Qualified at the first minute end with pooled evidence of at least 50 (not later, not before).
    assert pooled.at(members, first).score >= 50 > pooled.at(members, first - MINUTE_MS).score
    assert first <= (T0 + 10) * MINUTE_MS  # minutes, where the members' own scores would take hours
    assert qualified_since(members, card(members, linked_at), accounts, config) == {}  # without the pool: nobody


def test_a_resellers_benign_customers_are_not_paged_with_its_distillers(config: LinkingConfig) -> None:
    customers = [f"cust-{i:02d}" for i in range(60)]
    distillers = [f"dist-{i}" for i in range(4)]
    frames = [(c, T0 + t, benign(2)) for t in range(90) for c in customers]
    frames += [(d, T0 + t, extractor(3)) for t in range(90) for d in distillers]
    pooled = evidence(config, frames)
    members = sorted(customers + distillers)
    assert pooled.at(members, (T0 + 90) * MINUTE_MS).score < 50  # pooled traffic: mostly benign
    accounts = {c: {"calls": 180, "steps": [[(T0 + 5) * MINUTE_MS, 3.0]]} for c in customers}
    accounts |= {d: {"calls": 270, "steps": [[(T0 + 10) * MINUTE_MS, 85.0]]} for d in distillers}
    since = qualified_since(members, card(members, T0 * MINUTE_MS), accounts, config, pooled=pooled)
    assert set(since) == set(distillers)


def test_a_companys_lock_step_cron_on_one_card_stays_quiet(config: LinkingConfig) -> None:
    members = [f"corp-{i}" for i in range(8)]
    frames = [(m, T0 + t, benign(6)) for t in range(0, 120, 5) for m in members]  # every 5 minutes, together
    pooled = evidence(config, frames)
    accounts = {m: {"calls": 144, "steps": [[(T0 + 1) * MINUTE_MS, 5.0]]} for m in members}
    assert qualified_since(members, card(members, T0 * MINUTE_MS), accounts, config, pooled=pooled) == {}


def test_any_arrival_order_gives_the_same_alert_times(config: LinkingConfig) -> None:
    members, frames = quiet_fleet(60)
    accounts = {m: {"calls": 30, "steps": [[(T0 + 20 + i) * MINUTE_MS, 15.0 + i]]} for i, m in enumerate(members)}
    # Linked at different times: the group grows, and each state is tested at the minutes it stood.
    linked = {(members[i], members[i + 1]): {"pay:card": (T0 + 2 * i) * MINUTE_MS} for i in range(len(members) - 1)}
    expected = qualified_since(members, linked, accounts, config, pooled=evidence(config, frames))
    assert expected
    for seed in range(4):
        shuffled = frames + frames[: len(frames) // 3]  # a re-read batch: sent again
        random.Random(seed).shuffle(shuffled)
        pooled = evidence(config, shuffled, chunk=37 + seed)
        order = list(linked.items())
        random.Random(seed).shuffle(order)
        assert qualified_since(list(reversed(members)), dict(order), accounts, config, pooled=pooled) == expected


def test_the_backtest_scores_the_pool_as_stage_b_does(config: LinkingConfig) -> None:
    members, frames = quiet_fleet(70)
    pooled = evidence(config, frames)
    histories = {}
    for m in members:
        mine = sorted((t, c) for a, t, c in frames if a == m)
        ends = np.asarray([(t + 1) * MINUTE_MS for t, _ in mine], np.int64)
        counts = np.asarray([c for _, c in mine], np.float64)
        histories[m] = _History(ends, np.full(len(mine), 8.0), np.cumsum(counts[:, 0]),
                                np.vstack([np.zeros((1, len(POOLED))), np.cumsum(counts, axis=0)]))
    for minute in (T0 + 3, T0 + 30, T0 + 65):
        at = minute * MINUTE_MS + 1234
        version = {"cluster_id": "c-1", "account_ids": members, "score": 70.0, "size": 12, "updated_ms": at,
                   "factor_names": [], "factor_points": [], "shared_features": []}
        facts = next(facts_of([version], histories))
        assert facts.values["pooled_score"] == pooled.at(members, at).score


def test_the_ring_round_trips_through_a_checkpoint_and_forgets_beyond_its_horizon(config: LinkingConfig) -> None:
    members, frames = quiet_fleet(30)
    pooled = evidence(config, frames)
    restored = PooledEvidence(config)
    restored.restore(orjson.loads(orjson.dumps(pooled.section())))
    assert restored.newest == pooled.newest
    assert np.array_equal(restored.minutes(members).values, pooled.minutes(members).values)
    assert restored.at(members, (T0 + 30) * MINUTE_MS) == pooled.at(members, (T0 + 30) * MINUTE_MS)
    # Hours later one account's frame moves the horizon: the others' minutes are forgotten, not misread.
    width = pooled.ring.width
    restored.handle(updates([("late", T0 + 30 + width, extractor(1))]))
    assert len(restored.ring) == 1 and restored.at(members, (T0 + 30) * MINUTE_MS).calls == 0
    assert pooled.ring.nbytes() // max(len(pooled.ring.last), 1) == width * (4 * len(POOLED) + 4) + 8


def test_account_updates_carry_the_counters_and_older_versions_bring_none(config: LinkingConfig) -> None:
    sent = updates([("a", T0, extractor(2)), ("b", T0, benign(1)), ("a", T0 + 1, extractor(1))])
    (body,) = pack_accounts(sent)
    assert orjson.loads(body)["v"] == 4 and decode(body) == sent
    v2 = {k: v for k, v in orjson.loads(body).items() if not k.startswith("frame_") or k in
          ("frame_account", "frame_minute", "frame_calls")} | {"v": 2}
    old = decode(orjson.dumps(v2))
    assert isinstance(old, AccountUpdates) and old.frame_calls == sent.frame_calls and old.frame_counters == {}
    pooled = PooledEvidence(config)
    pooled.handle(old)
    assert len(pooled.ring) == 0  # calls without the other counters: no ratio to pool
    pooled.handle(decode(body))  # type: ignore[arg-type]
    assert pooled.at(["a", "b"], (T0 + 2) * MINUTE_MS).calls == 4


def test_the_alerts_explain_the_pooled_evidence(config: LinkingConfig) -> None:
    points = {"reasoning_elicitation": 40.0, "output_harvest": 20.0, "rate_limit_pressure": 0.4}
    expected = "pooled: reasoning_elicitation 40, output_harvest 20 over 12 members' 48 calls"
    assert PooledScore(62.5, points, 12, 48).explain() == expected
    members, frames = quiet_fleet()
    pooled = evidence(config, frames)
    accounts = {m: {"calls": 20, "ts": (T0 + 40) * MINUTE_MS, "max": 8.0} for m in members}
    cluster = describe_cluster(members, card(members, T0 * MINUTE_MS), accounts, config, pooled=pooled.at)
    assert cluster.score.members["pooled_score"] == pooled.at(members, (T0 + 40) * MINUTE_MS).score >= 50
    assert cluster.score.factors["member_scores"] > 30  # the member factor takes the pooled score
    facts = ClusterTracker(config, {})._facts(cluster)
    text = facts.signals[len(cluster.score.factors)]
    assert text.startswith("pooled: reasoning_elicitation 40, reasoning_take 23, output_harvest 20")
    assert text.endswith("over 12 members' 96 calls")
    assert facts.points[len(cluster.score.factors)] == cluster.score.pooled.score
