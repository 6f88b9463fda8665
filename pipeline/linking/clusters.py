"""Stage B logic: pair evidence → linked pairs → clusters → cluster scores.

A pair's strength is the sum of the weights of the distinct feature kinds it shares; it is
linked at ``link_threshold``. Clusters are the connected components of linked pairs, with an
id stable while their smallest member stays (a merge keeps the id of that side). The score
(0–100) sums four factors, each ``weight × ramp``. The evidence is not stored: ``link_state``
derives it from stage A's memberships and hands ``describe_cluster`` one cluster's linked pairs
and its hubs (``HubLinks``: one listed feature, N − 1 links, no pairs). Whether a cluster alerts
is a cluster rule's business. Rules, weights and score:
docs/linking.md ("Rules and score (`pipeline/linking/linking.v1.json`)").
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from pipeline.hashing import stable_id
from pipeline.linking.config import ClusterConfig, LinkingConfig
from pipeline.linking.membership import kind_of
from pipeline.linking.pooled import PooledScore

Evidence = dict[str, int]  # feature -> event time (ms) the pair first shared it


def cluster_id(members: Iterable[str]) -> str:
    return "c-" + stable_id(min(members), size=4)


def pair_strength(features: Iterable[str], config: LinkingConfig) -> float:
    return config.strength({kind_of(f) for f in features})


def crossing_ts(evidence: Mapping[str, int], config: LinkingConfig) -> int | None:
    """Event time at which the pair's strength first reached the link threshold (None: not linked)."""
    kinds: set[str] = set()
    for feature, ts in sorted(evidence.items(), key=lambda item: (item[1], item[0])):
        kind = kind_of(feature)
        if kind not in kinds:
            kinds.add(kind)
            if config.strength(kinds) >= config.link_threshold:
                return ts
    return None


@dataclass(frozen=True)
class HubLinks:
    """A hub's links inside one cluster: each member joins it at its link time (``joins``, sorted by time
    then account; the first is the member the others join), each join a link of strength ``weight``."""

    feature: str
    weight: float
    joins: tuple[tuple[int, str], ...]  # (link time ms, member)

    @property
    def links(self) -> int:
        return len(self.joins) - 1


@dataclass(frozen=True)
class ClusterScore:
    score: float  # 0..100
    factors: dict[str, float]  # factor name -> points
    members: Mapping[str, float] = field(default_factory=dict)  # member_aggregates and pooled_score (rule names)
    calls: float = 0.0  # the members' calls
    pooled: PooledScore = field(default_factory=PooledScore)  # what the members take together (pooled.py)


def _ramp(value: float, full_at: float) -> float:
    return min(1.0, max(0.0, value / full_at))


TOP_MEMBERS = 3  # the cluster rule's size gate: a campaign has at least three members


def member_aggregates(member_max_scores: Collection[float]) -> dict[str, float]:
    """The cluster rule names over the members' max extraction scores (missing members count 0).

    ``member_top_score``, the mean of the ``TOP_MEMBERS`` highest: a fleet spread over time zones has
    members asleep while the awake ones extract, and it does not wait for the sleepers; neither a new
    member nor a rising score lowers it. ``member_mean_score``, the plain mean: a reseller's or a
    company's many quiet accounts on one card keep it low whatever a few of them do.
    ``member_max_score``, the highest."""
    scores = sorted(member_max_scores, reverse=True)
    return {"member_top_score": sum(scores[:TOP_MEMBERS]) / TOP_MEMBERS,
            "member_mean_score": sum(scores) / max(len(scores), 1),
            "member_max_score": scores[0] if scores else 0.0}


def score_cluster(size: int, member_max_scores: Sequence[float], link_strengths: Sequence[float], calls: float,
                  config: ClusterConfig, pooled: PooledScore | None = None) -> ClusterScore:
    link_full = config.factors["link_strength"].full_at
    pooled = pooled or PooledScore()
    members = {**member_aggregates(member_max_scores), "pooled_score": pooled.score}
    score = score_from_means(
        size, members["member_top_score"],
        sum(_ramp(s, link_full) for s in link_strengths) / max(len(link_strengths), 1), calls, config, pooled.score,
    )
    return ClusterScore(score.score, score.factors, members, calls, pooled)


def score_from_means(size: int, top_member: float, mean_link_ramp: float, calls: float,
                     config: ClusterConfig, pooled: float = 0.0) -> ClusterScore:
    """The score from aggregates: ``member_top_score``, mean of the links' strength ramps, total calls, and the
    members' ``pooled_score``: the member factor takes the higher of the top three and the pooled score, so a
    fleet whose members are each under the volume gate scores on what they take together."""
    points = score_series(size, top_member, mean_link_ramp, calls, config, np.array([pooled]))
    return ClusterScore(float(points["score"][0]), {name: float(points[name][0]) for name in config.factors})


def score_series(size: int, top_member: float, mean_link_ramp: float, calls: float, config: ClusterConfig,
                 pooled: np.ndarray) -> dict[str, np.ndarray]:
    """``score_from_means`` over a series of pooled scores: each factor's points and ``score``, per entry."""
    f = config.factors
    ramps = {
        "size": _ramp(math.log2(max(size, 1)), math.log2(max(f["size"].full_at, 2.0))),
        "member_scores": np.clip(np.maximum(top_member, pooled) / f["member_scores"].full_at, 0.0, 1.0),
        "link_strength": mean_link_ramp,
        "volume": _ramp(math.log10(1 + max(calls, 0)), math.log10(1 + f["volume"].full_at)),
    }
    points = {name: np.round(f[name].weight * np.broadcast_to(ramps[name], pooled.shape), 2) for name in f}
    return {**points, "score": np.round(np.minimum(100.0, sum(points.values())), 2)}  # type: ignore[dict-item]


@dataclass(frozen=True)
class Cluster:
    """One cluster as written: members, score with its factors, the features its links share."""

    cluster_id: str
    members: tuple[str, ...]  # sorted
    score: ClusterScore
    shared_features: tuple[str, ...]  # strongest kind first, then most shared
    first_seen_ts: int  # event time the first of its pairs became linked
    updated_ts: int  # latest event time of its evidence or its members' scores


def describe_cluster(members: Collection[str], linked: Mapping[tuple[str, str], Evidence],
                     accounts: Mapping[str, Mapping[str, float]], config: LinkingConfig,
                     label: Callable[[str], str] = str,
                     pooled: Callable[[Collection[str], int], PooledScore] | None = None,
                     hubs: Sequence[HubLinks] = ()) -> Cluster:
    """Score and explain the cluster of ``members`` from its linked pairs (``LinkState.pair_evidence``,
    sorted) and the members' account state.

    ``accounts`` maps account -> {"calls", "max", "ts"} (stage B's account table); missing
    accounts count as score 0 and no calls. ``label`` names a listed feature (``LinkState.label``:
    a sync feature with what its members' calls did). ``pooled(members, ts)``: their pooled score at
    the cluster's latest evidence time (``pooled.PooledEvidence.at``; None: none). ``hubs``: the hubs
    linking members (``LinkState.hub_links``), each listed once and counted as its links.
    """
    evidence = list(linked.values())
    shares = Counter(feature for ev in evidence for feature in ev)
    for hub in hubs:
        shares[hub.feature] += hub.links
    listed = sorted(shares, key=lambda ft: (-config.weight(kind_of(ft)), -shares[ft], ft))
    state = [accounts.get(m, {}) for m in members]
    latest = max([ts for ev in evidence for ts in ev.values()] + [hub.joins[-1][0] for hub in hubs]
                 + [int(s.get("ts") or 0) for s in state], default=0)
    strengths = [pair_strength(ev, config) for ev in evidence]
    for hub in hubs:
        strengths += [hub.weight] * hub.links
    score = score_cluster(
        len(members), [float(s.get("max") or 0.0) for s in state], strengths,
        sum(float(s.get("calls") or 0) for s in state), config.cluster,
        pooled(members, latest) if pooled is not None else None,
    )
    crossings = [t for t in (crossing_ts(ev, config) for ev in evidence) if t is not None]
    crossings += [hub.joins[1][0] for hub in hubs]
    return Cluster(
        cluster_id(members), tuple(sorted(members)), score,
        tuple(label(f) for f in listed[: config.cluster.max_listed_features]),
        min(crossings, default=0), latest,
    )
