"""When did a cluster qualify? Event times for cluster alerts that depend on the data, not on arrival order.

A member's alert time is the earliest event time ``t`` at which the member's
cluster, rebuilt from what had happened by ``t``, already met a cluster rule's
condition (``pipeline/alerting/cluster_alerts.py``; default ``cluster_extraction``
of the rules file) on its score, size, member scores and calls: links count from their crossing time
(``clusters.crossing_ts``), a member's max score from the frames that had
closed by ``t`` (its *staircase*), calls at their current total (the volume
factor is log-scaled and capped). Given the same evidence, any arrival order
gives the same times; that is what keeps a replay's report identical run after run.

A staircase is the running maximum of an account's frame scores over event time,
as ``[[frame_end_ms, floor(score)], ...]`` with strictly increasing times and
values; inserting points in any order gives the same staircase.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Collection, Mapping

from pipeline.alerting.cluster_alerts import Predicate, default_predicate
from pipeline.linking.clusters import Evidence, crossing_ts, member_aggregates, pair_strength, score_from_means
from pipeline.linking.config import LinkingConfig

Staircase = list[list[int]]


def add_step(steps: Staircase, ts: int, score: float) -> Staircase:
    """``steps`` with the point (ts, floor(score)); points it dominates are dropped. Returns a new list."""
    value = math.floor(score)
    times = [t for t, _ in steps]
    i = bisect.bisect_right(times, ts)
    if i and steps[i - 1][1] >= value:
        return steps  # an earlier frame already reached this score
    kept = [p for p in steps[i:] if p[1] > value]
    return [*steps[:i], [ts, value], *kept]


def score_at(steps: Staircase, ts: int) -> int:
    i = bisect.bisect_right([t for t, _ in steps], ts)
    return steps[i - 1][1] if i else 0


class _Sets:
    """Union-find with the running sums the cluster score needs (member scores are read per group)."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}
        self.members: dict[str, set[str]] = {}
        self.calls: dict[str, float] = {}
        self.ramp_sum: dict[str, float] = {}
        self.links: dict[str, float] = {}

    def add(self, x: str, calls: float) -> None:
        self.parent[x] = x
        self.members[x] = {x}
        self.calls[x], self.ramp_sum[x], self.links[x] = calls, 0.0, 0.0

    def find(self, x: str) -> str:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str, ramp: float) -> str:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            if len(self.members[ra]) < len(self.members[rb]):
                ra, rb = rb, ra
            self.parent[rb] = ra
            self.members[ra] |= self.members.pop(rb)
            for sums in (self.calls, self.ramp_sum, self.links):
                sums[ra] += sums.pop(rb)
        self.ramp_sum[ra] += ramp
        self.links[ra] += 1
        return ra


def qualified_since(members: Collection[str], linked: Mapping[tuple[str, str], Evidence],
                    accounts: Mapping[str, Mapping[str, object]], config: LinkingConfig,
                    qualifies: Predicate | None = None) -> dict[str, int]:
    """Member -> earliest event time its cluster met ``qualifies`` for it (a cluster rule's condition on
    ``score``, ``size``, the ``member_aggregates``, ``calls`` and the member's own
    ``member_score``; default the packaged ``cluster_extraction``); members that never did are absent.
    ``linked``: the cluster's linked pairs with their evidence (``LinkState.pair_evidence``)."""
    holds = qualifies or default_predicate()
    policy = config.cluster
    link_full = policy.factors["link_strength"].full_at
    events: list[tuple[int, int, str, str, float]] = []  # (ts, order, a, b or "", value)
    for (a, b), evidence in linked.items():
        t = crossing_ts(evidence, config)
        events.append((t if t is not None else 0, 1, a, b, min(1.0, pair_strength(evidence, config) / link_full)))
    sets = _Sets()
    score: dict[str, float] = {}
    for m in members:
        state = accounts.get(m, {})
        sets.add(m, float(state.get("calls") or 0))  # type: ignore[arg-type]
        score[m] = 0.0
        for t, value in state.get("steps") or []:  # type: ignore[attr-defined]
            events.append((int(t), 0, m, "", float(value)))
    events.sort()
    since: dict[str, int] = {}
    i = 0
    while i < len(events):
        ts = events[i][0]
        touched = set()
        while i < len(events) and events[i][0] == ts:
            _, order, a, b, value = events[i]
            if order == 0:  # a member's max score rose
                score[a] = value
                touched.add(a)
            else:
                touched.add(sets.union(a, b, value))
            i += 1
        for root in {sets.find(x) for x in touched}:
            group = sets.members[root]
            if len(group) < 2 or group <= since.keys():
                continue
            members = member_aggregates([score[m] for m in group])
            links = max(sets.links[root], 1)
            total = score_from_means(len(group), members["member_top_score"], sets.ramp_sum[root] / links,
                                     sets.calls[root], policy).score
            waiting = sorted(group - since.keys())
            values = {"score": total, "size": len(group), **members, "calls": sets.calls[root]}
            for m, ok in zip(waiting, holds(values, [score[m] for m in waiting]), strict=True):
                if ok:
                    since[m] = ts
    return since
