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

import numpy as np

from pipeline.alerting.cluster_alerts import Predicate, default_predicate
from pipeline.linking.clusters import Evidence, crossing_ts, member_aggregates, pair_strength, score_series
from pipeline.linking.config import LinkingConfig
from pipeline.linking.pooled import MINUTE_MS, MemberMinutes, PooledEvidence

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


class _Pooled:
    """The groups' pooled counters per minute (summed as the union-find joins them) and their pooled score at a
    time: frames ended by then, the last ``window`` minutes (``pooled.PooledEvidence.at``, vectorised)."""

    def __init__(self, members: list[str], evidence: PooledEvidence | None) -> None:
        self.evidence = evidence
        got = evidence.minutes(members) if evidence is not None else MemberMinutes(0, np.zeros((len(members), 0, 1)))
        self.start = got.start
        self.length = got.values.shape[1]
        self.rows = {m: got.values[i] for i, m in enumerate(members)}  # root -> [minutes, columns]
        self.cumulative: dict[str, np.ndarray] = {}

    def union(self, kept: str, gone: str) -> None:
        self.rows[kept] = self.rows[kept] + self.rows.pop(gone)
        self.cumulative.pop(kept, None)
        self.cumulative.pop(gone, None)

    def ends(self, after: int, before: int) -> np.ndarray:
        """Event times in (after, before) at which a minute's frames end: where a pooled score can change."""
        ends = (self.start + 1 + np.arange(self.length, dtype=np.int64)) * MINUTE_MS
        return ends[(ends > after) & (ends < before)]

    def scores(self, root: str, times: np.ndarray) -> np.ndarray:
        if self.evidence is None or not self.length:
            return np.zeros(len(times))
        c = self.cumulative.get(root)
        if c is None:
            c = self.cumulative[root] = np.vstack([np.zeros((1, self.rows[root].shape[1])),
                                                   np.cumsum(self.rows[root], axis=0)])
        upto = np.clip(times // MINUTE_MS - self.start, 0, self.length)  # minutes start .. upto - 1 have ended
        since = np.clip(upto - self.evidence.window, 0, self.length)
        return self.evidence.scorer.series(c[upto] - c[since])[0]


def qualified_since(members: Collection[str], linked: Mapping[tuple[str, str], Evidence],
                    accounts: Mapping[str, Mapping[str, object]], config: LinkingConfig,
                    qualifies: Predicate | None = None, pooled: PooledEvidence | None = None) -> dict[str, int]:
    """Member -> earliest event time its cluster met ``qualifies`` for it (a cluster rule's condition on
    ``score``, ``size``, the ``member_aggregates``, ``calls``, ``pooled_score`` and the member's own
    ``member_score``; default the packaged ``cluster_extraction``); members that never did are absent.
    ``linked``: the cluster's linked pairs with their evidence (``LinkState.pair_evidence``); ``pooled``:
    the members' counters per minute (None: pooled score 0).

    The group as rebuilt at ``t`` holds from one event (a link, a member's score step) to the next; its
    pooled score changes at every minute's end in between, so each group state is tested at its event
    and at those minute ends at once (a vector of times), not minute by minute."""
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
    group_pool = _Pooled(sorted(members), pooled)
    changed: dict[str, int] = {}  # root -> event time its group last changed (tested then)
    since: dict[str, int] = {}

    def test(root: str, times: np.ndarray) -> None:
        group = sets.members[root]
        if len(group) < 2 or group <= since.keys() or not len(times):
            return
        agg = member_aggregates([score[m] for m in group])
        pooled_now = group_pool.scores(root, times)
        links = max(sets.links[root], 1)
        total = score_series(len(group), agg["member_top_score"], sets.ramp_sum[root] / links, sets.calls[root],
                             policy, pooled_now)["score"]
        waiting = sorted(group - since.keys())
        values = {"score": total, "size": len(group), **agg, "calls": sets.calls[root], "pooled_score": pooled_now}
        held = holds(values, [score[m] for m in waiting])  # [times, waiting]
        first = held.argmax(axis=0)
        for m, row, ok in zip(waiting, first.tolist(), held.any(axis=0).tolist(), strict=True):
            if ok:
                since[m] = int(times[row])

    def between(root: str, before: int) -> None:
        """The group of ``root`` as it stood since its last change, at the minute ends before ``before``."""
        if root in changed:
            test(root, group_pool.ends(changed[root], before))

    i = 0
    while i < len(events):
        ts = events[i][0]
        j = i
        while j < len(events) and events[j][0] == ts:
            j += 1
        for root in {sets.find(x) for _, _, a, b, _ in events[i:j] for x in (a, b) if x}:
            between(root, ts)
        touched = set()
        for _, order, a, b, value in events[i:j]:
            if order == 0:  # a member's max score rose
                score[a] = value
                touched.add(a)
            else:
                ra, rb = sets.find(a), sets.find(b)
                root = sets.union(a, b, value)
                if ra != rb:
                    group_pool.union(root, rb if root == ra else ra)
                touched.add(root)
        i = j
        for root in {sets.find(x) for x in touched}:
            changed[root] = ts
            test(root, np.array([ts], np.int64))
    end = (group_pool.start + group_pool.length + 1) * MINUTE_MS  # past the newest minute's end
    for root in {sets.find(m) for m in members}:
        between(root, end)
    return since
