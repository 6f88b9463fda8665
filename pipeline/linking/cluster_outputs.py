"""Cluster changes → ``clusters`` rows and ``cluster_extraction`` alert rows.

``ClusterTracker.emit`` is given the clusters stage B re-evaluated and returns only what changed
since the last rows it produced: changed ``clusters`` rows, retirement rows (``active`` = 0,
``merged_into``) for ids that no longer name a cluster, and per cluster rule one ``alerts`` row
and transition per member, once per firing (lifecycle: ``pipeline/alerting/cluster_alerts.py``;
``fired_ts`` from ``alert_time.qualified_since``). ``version`` is the wall clock in µs, not event
time, so rows re-written after a restart still replace the older ones. Rows and listings:
docs/linking.md ("Topology": Stage B; "Rules and score (`pipeline/linking/linking.v1.json`)": Merges).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass, field

import numpy as np

from pipeline.alerting.alert_rows import AlertRows
from pipeline.alerting.cluster_alerts import ClusterAlerting, ClusterFacts
from pipeline.alerting.engine import AlertBatch, AlertSetup
from pipeline.alerting.rules import CompiledRule
from pipeline.linking.clusters import Cluster
from pipeline.linking.config import LinkingConfig
from pipeline.linking.membership import kind_of

RULE_CLUSTER = "cluster_extraction"  # the packaged default cluster rule


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
    merged_into: list[str] = field(default_factory=list)  # retirement rows: the cluster now holding it

    def __len__(self) -> int:
        return len(self.cluster_id)

    def add(self, cluster: Cluster, *, active: bool, version: int, merged_into: str = "") -> None:
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
        self.merged_into.append(merged_into)

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
            "merged_into": self.merged_into,
        }


class ClusterTracker:
    """Remembers the rows it produced, to emit only changes (in memory; rebuilt by a full ``emit``)."""

    def __init__(self, config: LinkingConfig, alerted: MutableMapping[str, object],
                 clock_us: Callable[[], int] = lambda: time.time_ns() // 1000,
                 alerting: AlertSetup | None = None,
                 accounts: Mapping[str, Mapping[str, object]] | None = None) -> None:
        """``accounts``: stage B's account state (members' max scores, for raised allow-list thresholds)."""
        self.config = config
        self.alerted = alerted
        self.accounts = accounts if accounts is not None else {}
        self.alerting = ClusterAlerting(alerting)
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
             since: Callable[[Cluster, CompiledRule], Mapping[str, int]], *, alerts: bool = True,
             exact: bool = False, out: AlertBatch | None = None) -> tuple[ClusterRows, AlertRows]:
        """Rows for the re-evaluated ``clusters``.

        ``current_id(account)`` names the cluster holding an account now; ``since(cluster, rule)``
        gives its members' qualifying times under a cluster rule (called only for clusters that
        meet its condition). ``alerts=False`` writes cluster rows only; ``exact`` writes any
        change. Alert rows are returned; with ``out`` they, the transitions and the suppression
        counts are also added to it.
        """
        rows = ClusterRows()
        version = self.clock_us()
        fired = AlertBatch()
        live = {c.cluster_id for c in clusters}
        for cluster in sorted(clusters, key=lambda c: c.cluster_id):
            old = self._written.get(cluster.cluster_id)
            if old is None or not self._same(old, cluster, exact=exact):
                rows.add(cluster, active=True, version=version)
                self._written[cluster.cluster_id] = cluster
            if alerts:
                self.alerting.evaluate(self._facts(cluster), lambda rule, c=cluster: since(c, rule),  # type: ignore[misc]
                                       self.alerted, fired)
        # Ids whose smallest member now sits in another cluster (or none) are retired; the row says which
        # cluster holds that member now ("" when none), so a retired campaign id can be followed.
        for cid, old in list(self._written.items()):
            holder = current_id(old.members[0])
            if cid not in live and holder != cid:
                rows.add(old, active=False, version=version, merged_into=holder or "")
                del self._written[cid]
        if out is not None:
            out.extend(fired)
        return rows, fired.alerts

    def forget(self) -> None:
        """Drop the memory of written rows (after a rebalance): the next ``emit`` rewrites every cluster."""
        self._written.clear()

    def _facts(self, cluster: Cluster) -> ClusterFacts:
        score = cluster.score
        values = {"score": score.score, "size": len(cluster.members), **score.members, "calls": score.calls}
        pooled = [score.pooled.explain()] if score.pooled.score > 0 else []
        signals = [*score.factors, *pooled, *cluster.shared_features]
        points = [*score.factors.values(), *[score.pooled.score] * len(pooled),
                  *(self.config.weight(kind_of(f)) for f in cluster.shared_features)]
        member_max = {m: float(self.accounts.get(m, {}).get("max") or 0.0) for m in cluster.members}  # type: ignore[arg-type]
        return ClusterFacts(cluster.cluster_id, cluster.members, values, cluster.updated_ts, signals, points,
                            member_max)
