"""When did a cluster qualify? Event times for cluster alerts that depend on the data, not on arrival order.

A member's alert time is the earliest event time ``t`` at which its cluster, rebuilt from what had
happened by ``t``, met a cluster rule's condition (``pipeline/alerting/cluster_alerts.py``). A member's
max score by ``t`` is its *staircase*: ``[[frame_end_ms, floor(score)], ...]``, the running maximum of
its frame scores, strictly increasing in both, the same whatever order points are inserted in. What
counts by ``t``: docs/linking.md, "Event time and determinism".
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Collection, Mapping, Sequence

import numpy as np

from pipeline.alerting.cluster_alerts import Predicate, default_predicate
from pipeline.linking.clusters import TOP_MEMBERS, Evidence, HubLinks, crossing_ts, pair_strength, score_series
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
    """Union-find with the running sums the cluster score needs, and per group its members not yet qualified
    bucketed by their score: a cluster rule sees a member only through its score, so a group state is tested
    once per distinct score, not once per member (a hub of 20,000 members has a few dozen)."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}
        self.size: dict[str, int] = {}
        self.calls: dict[str, float] = {}
        self.ramp_sum: dict[str, float] = {}
        self.links: dict[str, float] = {}
        self.score_sum: dict[str, float] = {}
        self.top: dict[str, list[tuple[float, str]]] = {}  # root -> its TOP_MEMBERS highest (score, member)
        self.waiting: dict[str, dict[float, set[str]]] = {}  # root -> score -> members not yet qualified

    def add(self, x: str, calls: float) -> None:
        self.parent[x] = x
        self.size[x] = 1
        self.calls[x], self.ramp_sum[x], self.links[x], self.score_sum[x] = calls, 0.0, 0.0, 0.0
        self.top[x] = [(0.0, x)]
        self.waiting[x] = {0.0: {x}}

    def find(self, x: str) -> str:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str, ramp: float) -> str:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            if self.size[ra] < self.size[rb]:
                ra, rb = rb, ra
            self.parent[rb] = ra
            self.size[ra] += self.size.pop(rb)
            for sums in (self.calls, self.ramp_sum, self.links, self.score_sum):
                sums[ra] += sums.pop(rb)
            self.top[ra] = sorted(self.top[ra] + self.top.pop(rb), reverse=True)[:TOP_MEMBERS]
            kept = self.waiting[ra]
            for value, members in self.waiting.pop(rb).items():
                kept.setdefault(value, set()).update(members)
        self.ramp_sum[ra] += ramp
        self.links[ra] += 1
        return ra

    def rise(self, member: str, old: float, new: float) -> None:
        """``member``'s max score rose from ``old`` to ``new`` (staircases only rise)."""
        root = self.find(member)
        self.score_sum[root] += new - old
        top = [t for t in self.top[root] if t[1] != member] + [(new, member)]
        self.top[root] = sorted(top, reverse=True)[:TOP_MEMBERS]
        bucket = self.waiting[root].get(old)
        if bucket is not None and member in bucket:
            bucket.discard(member)
            if not bucket:
                del self.waiting[root][old]
            self.waiting[root].setdefault(new, set()).add(member)

    def aggregates(self, root: str) -> dict[str, float]:
        """``clusters.member_aggregates`` of the group, from its running sums."""
        top = self.top[root]
        return {"member_top_score": sum(s for s, _ in top) / TOP_MEMBERS,
                "member_mean_score": self.score_sum[root] / self.size[root], "member_max_score": top[0][0]}


class _Pooled:
    """The groups' pooled counters per minute (summed as the union-find joins them) and their pooled score at a
    time: frames ended by then, the last ``window`` minutes (``pooled.PooledEvidence.at``, vectorised)."""

    def __init__(self, evidence: PooledEvidence | None) -> None:
        self.evidence = evidence
        got = evidence.minutes([]) if evidence is not None else MemberMinutes(0, np.zeros((0, 0, 1)))
        self.start = got.start
        self.length = got.values.shape[1]
        # root -> [minutes, columns], read from the ring when a member first joins a group: only groups are
        # held, not every member's rows (a day's ring over a 20,000-member hub would be gigabytes).
        self.rows: dict[str, np.ndarray] = {}
        self.cumulative: dict[str, np.ndarray] = {}

    def _row(self, root: str) -> np.ndarray:
        row = self.rows.pop(root, None)
        if row is None:
            row = self.evidence.minutes([root], self.start).values[0] if self.evidence is not None \
                else np.zeros((self.length, 1))
        return row

    def union(self, kept: str, gone: str) -> None:
        row = self._row(kept)
        row += self._row(gone)
        self.rows[kept] = row
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
            row = self.rows[root] = self._row(root)
            c = self.cumulative[root] = np.vstack([np.zeros((1, row.shape[1])), np.cumsum(row, axis=0)])
        upto = np.clip(times // MINUTE_MS - self.start, 0, self.length)  # minutes start .. upto - 1 have ended
        since = np.clip(upto - self.evidence.window, 0, self.length)
        return self.evidence.scorer.series(c[upto] - c[since])[0]


def qualified_since(members: Collection[str], linked: Mapping[tuple[str, str], Evidence],
                    accounts: Mapping[str, Mapping[str, object]], config: LinkingConfig,
                    qualifies: Predicate | None = None, pooled: PooledEvidence | None = None,
                    hubs: Sequence[HubLinks] = ()) -> dict[str, int]:
    """Member -> earliest event time its cluster met ``qualifies`` for it (a cluster rule's condition on
    ``score``, ``size``, the ``member_aggregates``, ``calls``, ``pooled_score`` and the member's own
    ``member_score``; default the packaged ``cluster_extraction``); members that never did are absent.
    ``linked``: the cluster's linked pairs with their evidence (``LinkState.pair_evidence``); ``hubs``: its
    hubs (``LinkState.hub_links``), each member joining its hub's first member at its link time with the
    hub's weight as link strength, no pair enumerated; ``pooled``: the members' counters per minute (None:
    pooled score 0).

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
    for hub in hubs:
        first, ramp = hub.joins[0][1], min(1.0, hub.weight / link_full)
        events += [(t, 1, first, m, ramp) for t, m in hub.joins[1:]]
    sets = _Sets()
    score: dict[str, float] = {}
    for m in members:
        state = accounts.get(m, {})
        sets.add(m, float(state.get("calls") or 0))  # type: ignore[arg-type]
        score[m] = 0.0
        for t, value in state.get("steps") or []:  # type: ignore[attr-defined]
            events.append((int(t), 0, m, "", float(value)))
    events.sort()
    group_pool = _Pooled(pooled)
    changed: dict[str, int] = {}  # root -> event time its group last changed (tested then)
    since: dict[str, int] = {}

    def test(root: str, times: np.ndarray) -> None:
        waiting = sets.waiting[root]
        size = sets.size[root]
        if size < 2 or not waiting or not len(times):
            return
        agg = sets.aggregates(root)
        pooled_now = group_pool.scores(root, times)
        links = max(sets.links[root], 1)
        total = score_series(size, agg["member_top_score"], sets.ramp_sum[root] / links, sets.calls[root],
                             policy, pooled_now)["score"]
        values = {"score": total, "size": size, **agg, "calls": sets.calls[root], "pooled_score": pooled_now}
        scores = sorted(waiting)
        held = holds(values, scores)  # [times, distinct scores of the members waiting]
        first = held.argmax(axis=0)
        for value, row, ok in zip(scores, first.tolist(), held.any(axis=0).tolist(), strict=True):
            if ok:
                since.update(dict.fromkeys(waiting.pop(value), int(times[row])))

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
                sets.rise(a, score[a], value)
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
