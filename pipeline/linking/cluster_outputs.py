"""Cluster changes → ``clusters`` rows and ``cluster_extraction`` alert rows.

``ClusterTracker.emit`` is given the clusters stage B re-evaluated and returns
only what changed since the last rows it produced:

* a ``clusters`` row (``active`` = 1) for a cluster whose members, score (to 0.1)
  or listed features changed;
* a retirement row (``active`` = 0, last known content) for a cluster id that no
  longer names a cluster: its smallest member merged into a cluster with a smaller
  one, or its links were retracted. ``clusters`` is a ReplacingMergeTree on
  ``cluster_id`` by ``version``, so ``FINAL … WHERE active`` gives the current set;
* one ``alerts`` row per member (rule ``cluster_extraction``) when the cluster's
  score reaches ``alert_threshold``, it has at least ``min_alert_size`` members and
  their mean max extraction score reaches ``min_member_score``,
  at most once per member per ``renotify_minutes`` of event time (``alerted`` holds
  each member's last firing, a Faust table in the worker). ``fired_ts`` is the
  member's qualifying time (``alert_time.qualified_since``): the earliest event
  time at which its cluster, as far as the evidence then showed, met the policy.
  ``signals`` lists the score factors, then the shared features;
  ``signal_points`` their points (factors) and kind weights (features).

``version`` is the wall clock in microseconds, not event time: rows written after
a restart re-processed older evidence must still replace the rows written before.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field

import numpy as np

from pipeline.alerting.account_rules import AlertRows
from pipeline.linking.clusters import Cluster
from pipeline.linking.config import LinkingConfig
from pipeline.linking.membership import kind_of

RULE_CLUSTER = "cluster_extraction"


@dataclass
class ClusterRows:
    """Columns of the ``clusters`` table (schemas/tables.py CLUSTERS), one entry per row."""

    cluster_id: list[str] = field(default_factory=list)
    account_ids: list[list[str]] = field(default_factory=list)
    size: list[int] = field(default_factory=list)
    score: list[float] = field(default_factory=list)
    shared_features: list[list[str]] = field(default_factory=list)
    factor_names: list[list[str]] = field(default_factory=list)
    factor_points: list[list[float]] = field(default_factory=list)
    first_seen_ts: list[int] = field(default_factory=list)  # ms
    updated_ts: list[int] = field(default_factory=list)  # ms
    active: list[int] = field(default_factory=list)
    version: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.cluster_id)

    def add(self, cluster: Cluster, *, active: bool, version: int) -> None:
        self.cluster_id.append(cluster.cluster_id)
        self.account_ids.append(list(cluster.members))
        self.size.append(len(cluster.members))
        self.score.append(cluster.score.score)
        self.shared_features.append(list(cluster.shared_features))
        self.factor_names.append(list(cluster.score.factors))
        self.factor_points.append(list(cluster.score.factors.values()))
        self.first_seen_ts.append(cluster.first_seen_ts)
        self.updated_ts.append(cluster.updated_ts)
        self.active.append(int(active))
        self.version.append(version)

    def columns(self) -> dict[str, object]:
        """Insert columns for ClickHouseWriter.write('clusters', ...)."""
        return {
            "cluster_id": self.cluster_id,
            "account_ids": self.account_ids,
            "size": np.array(self.size, np.uint32),
            "score": np.array(self.score, np.float32),
            "shared_features": self.shared_features,
            "factor_names": self.factor_names,
            "factor_points": self.factor_points,
            "first_seen_ts": np.array(self.first_seen_ts, np.int64),
            "updated_ts": np.array(self.updated_ts, np.int64),
            "active": np.array(self.active, np.uint8),
            "version": np.array(self.version, np.uint64),
        }


@dataclass
class _AlertBuffer:
    ids: list[str] = field(default_factory=list)
    fired: list[int] = field(default_factory=list)
    accounts: list[str] = field(default_factory=list)
    severity: list[str] = field(default_factory=list)
    score: list[float] = field(default_factory=list)
    signals: list[list[str]] = field(default_factory=list)
    points: list[list[float]] = field(default_factory=list)

    def rows(self) -> AlertRows:
        fired = np.array(self.fired, np.int64)
        return AlertRows(self.ids, fired, self.accounts, [RULE_CLUSTER] * len(self.ids), self.severity,
                         np.array(self.score, np.float32), self.signals, self.points, fired // 60_000 * 60)


class ClusterTracker:
    """Remembers the rows it produced, to emit only changes (in memory; rebuilt by a full ``emit``)."""

    def __init__(self, config: LinkingConfig, alerted: MutableMapping[str, int],
                 clock_us: Callable[[], int] = lambda: time.time_ns() // 1000) -> None:
        self.config = config
        self.alerted = alerted
        self.clock_us = clock_us
        self._written: dict[str, Cluster] = {}  # cluster id -> last active row

    @staticmethod
    def _same(a: Cluster, b: Cluster, *, exact: bool) -> bool:
        # Live, a score drifting by less than 0.1 (calls adding up) is not worth a row; at the end it is.
        digits = 2 if exact else 1
        return (a.members == b.members and round(a.score.score, digits) == round(b.score.score, digits)
                and a.shared_features == b.shared_features
                and (not exact or (a.first_seen_ts, a.updated_ts) == (b.first_seen_ts, b.updated_ts)))

    def emit(self, clusters: list[Cluster], current_id: Callable[[str], str | None],
             since: Callable[[Cluster], Mapping[str, int]], *, alerts: bool = True,
             exact: bool = False) -> tuple[ClusterRows, AlertRows]:
        """Rows for the re-evaluated ``clusters``.

        ``current_id(account)`` names the cluster holding an account now; ``since(cluster)``
        gives its members' qualifying times (called only for clusters that meet the alert
        policy). ``alerts=False`` writes cluster rows only; ``exact`` writes any change.
        """
        rows = ClusterRows()
        version = self.clock_us()
        fired = _AlertBuffer()
        live = {c.cluster_id for c in clusters}
        for cluster in sorted(clusters, key=lambda c: c.cluster_id):
            old = self._written.get(cluster.cluster_id)
            if old is None or not self._same(old, cluster, exact=exact):
                rows.add(cluster, active=True, version=version)
                self._written[cluster.cluster_id] = cluster
            if alerts and self.qualifies(cluster):
                self._alert(cluster, since(cluster), fired)
        # Ids whose smallest member now sits in another cluster (or none) are retired.
        for cid, old in list(self._written.items()):
            if cid not in live and current_id(old.members[0]) != cid:
                rows.add(old, active=False, version=version)
                del self._written[cid]
        return rows, fired.rows()

    def forget(self) -> None:
        """Drop the memory of written rows (after a rebalance): the next ``emit`` rewrites every cluster."""
        self._written.clear()

    def qualifies(self, cluster: Cluster) -> bool:
        policy = self.config.cluster
        return (cluster.score.score >= policy.alert_threshold and len(cluster.members) >= policy.min_alert_size
                and cluster.score.mean_member_score >= policy.min_member_score)

    def _alert(self, cluster: Cluster, since: Mapping[str, int], out: _AlertBuffer) -> None:
        policy = self.config.cluster
        score = cluster.score.score
        signals = [*cluster.score.factors, *cluster.shared_features]
        points = [*cluster.score.factors.values(),
                  *(self.config.weight(kind_of(f)) for f in cluster.shared_features)]
        for member in cluster.members:
            fired_ms = since.get(member, cluster.updated_ts)
            last = self.alerted.get(member)
            if last is not None and fired_ms - last < policy.renotify_minutes * 60_000:
                continue
            self.alerted[member] = fired_ms
            out.ids.append(f"{RULE_CLUSTER}:{cluster.cluster_id}:{member}:{fired_ms}")
            out.fired.append(fired_ms)
            out.accounts.append(member)
            out.severity.append("critical" if score >= policy.critical_at else "warning")
            out.score.append(score)
            out.signals.append(signals)
            out.points.append(points)
