"""Cluster rules in ``distillwatch backtest``: the stored cluster versions through ``ClusterAlerting``.

Every active version in ``cluster_history``, in ``updated_ts`` order, is one evaluation, as linking
stage B evaluates each re-scored cluster live; member values come from their frames ended by
``updated_ts`` (``pooled_score`` through ``pipeline.linking.pooled``, as live). After the last stored
version, time moves on to the end of the members' scored history, so a rule's ``for`` elapses as live.
The differences from live: docs/alerting.md, "Backtesting".
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from clickhouse_connect.driver.client import Client

from pipeline.alerting.cluster_alerts import ClusterAlerting, ClusterFacts, predicate
from pipeline.alerting.engine import AlertBatch, AlertSetup
from pipeline.alerting.rules import CompiledRule
from pipeline.linking.clusters import member_aggregates
from pipeline.linking.config import load_linking_config
from pipeline.linking.pooled import MINUTE_MS, POOLED, PooledScorer
from pipeline.sinks.clickhouse import query_rows
from schemas.tables import CLUSTER_HISTORY, SIGNATURES_1M


@dataclass(frozen=True)
class _History:
    """One member's frames: end times (ms), running max score, running calls, running ``POOLED`` counters."""

    ends_ms: np.ndarray
    max_score: np.ndarray
    calls: np.ndarray
    counters: np.ndarray  # [frames + 1, len(POOLED)], cumulative from a zero row

    def at(self, ts_ms: int) -> tuple[float, float]:
        i = int(np.searchsorted(self.ends_ms, ts_ms, side="right"))
        return (float(self.max_score[i - 1]), float(self.calls[i - 1])) if i else (0.0, 0.0)

    def window(self, ts_ms: int, minutes: int) -> np.ndarray:
        """The counters of the frames ended by ``ts_ms`` within its last ``minutes`` minutes."""
        hi = int(np.searchsorted(self.ends_ms, ts_ms, side="right"))
        lo = int(np.searchsorted(self.ends_ms, (ts_ms // MINUTE_MS - minutes + 1) * MINUTE_MS, side="left"))
        return self.counters[hi] - self.counters[min(lo, hi)]


def cluster_versions(client: Client, database: str, since_ms: int | None) -> list[dict[str, Any]]:
    """Stored active cluster rows, oldest evidence first, each (cluster_id, version) once; ``retired``: the
    id's latest stored row retired it (merged into another, or its links withdrawn)."""
    since = "" if since_ms is None else " AND updated_ms >= {since:Int64}"
    rows = query_rows(client, f"SELECT DISTINCT cluster_id, version, account_ids, size, score, factor_names, "
                              f"factor_points, shared_features, updated_ms, retired FROM ("
                              f"SELECT *, toUnixTimestamp64Milli(updated_ts) AS updated_ms, "
                              f"argMax(active, version) OVER (PARTITION BY cluster_id) = 0 AS retired "
                              f"FROM {CLUSTER_HISTORY.qualified(database)}) WHERE active = 1{since} "
                              f"ORDER BY updated_ms, version, cluster_id",
                      {} if since_ms is None else {"since": since_ms})
    return rows


def member_histories(client: Client, database: str, members: list[str]) -> dict[str, _History]:
    if not members:
        return {}
    rows = client.query(f"SELECT account_id, toUnixTimestamp(window_start) AS ws, score, {', '.join(POOLED)} "
                        f"FROM {SIGNATURES_1M.qualified(database)} FINAL WHERE account_id IN {{m:Array(String)}} "
                        f"ORDER BY account_id, window_start", parameters={"m": members}).result_columns
    if not rows or not len(rows[0]):
        return {}
    accounts = np.asarray(rows[0], dtype=object)
    ends = (np.asarray(rows[1], np.int64) + 60) * 1000
    score = np.asarray(rows[2], np.float64)
    calls = np.asarray(rows[3], np.float64)
    counters = np.column_stack([np.asarray(c, np.float64) for c in rows[3:3 + len(POOLED)]])
    starts = np.flatnonzero(np.r_[True, accounts[1:] != accounts[:-1]])
    out = {}
    for lo, hi in zip(starts.tolist(), [*starts[1:].tolist(), len(accounts)], strict=True):
        out[str(accounts[lo])] = _History(ends[lo:hi], np.maximum.accumulate(score[lo:hi]),
                                          np.cumsum(calls[lo:hi]),
                                          np.vstack([np.zeros((1, len(POOLED))), np.cumsum(counters[lo:hi], axis=0)]))
    return out


def facts_of(versions: list[dict[str, Any]], histories: dict[str, _History],
             scorer: PooledScorer | None = None, window: int | None = None) -> Iterator[ClusterFacts]:
    scorer = scorer or PooledScorer()
    window = window or load_linking_config().pooled.window_minutes
    for v in versions:
        members = tuple(v["account_ids"])
        at = int(v["updated_ms"])
        seen = [histories[m].at(at) if m in histories else (0.0, 0.0) for m in members]
        scores = [s for s, _ in seen]
        pooled = [histories[m].window(at, window) for m in members if m in histories]
        sums = np.sum(pooled, axis=0) if pooled else np.zeros(len(POOLED))
        values = {"score": float(v["score"]), "size": float(v["size"]),
                  **member_aggregates(scores),
                  "calls": sum(c for _, c in seen),
                  "pooled_score": scorer.score(sums, sum(int(p[0] > 0) for p in pooled)).score}
        yield ClusterFacts(v["cluster_id"], members, values, at, list(v["factor_names"]),
                           [float(p) for p in v["factor_points"]], dict(zip(members, scores, strict=True)))


def _qualified_since(since: dict[tuple[str, str], int],
                     members: tuple[str, ...]) -> Callable[[CompiledRule], dict[str, int]]:
    return lambda cr: {m: since[(cr.name, m)] for m in members if (cr.name, m) in since}


def evaluate_clusters(client: Client, database: str, setups: list[AlertSetup],
                      since_ms: int | None) -> list[AlertBatch]:
    """Every setup's cluster rules over the stored versions; one AlertBatch per setup."""
    versions = cluster_versions(client, database, since_ms)
    retired = {v["cluster_id"] for v in versions if v["retired"]}
    members = sorted({m for v in versions for m in v["account_ids"]})
    histories = member_histories(client, database, members)
    facts = list(facts_of(versions, histories))
    # The end of the stored history: the last scored minute's end among the clusters' members.
    end_ms = max((int(h.ends_ms[-1]) for h in histories.values() if len(h.ends_ms)), default=0)
    out = []
    for setup in setups:
        batch = AlertBatch()
        alerting = ClusterAlerting(setup)
        holds = {cr.name: predicate(cr) for cr in alerting.rules}
        alerted: dict[str, object] = {}
        since: dict[tuple[str, str], int] = {}  # (rule, member) -> first version time of a qualifying run
        for f in facts:
            for name, check in holds.items():
                for m, ok in zip(f.members, check(f.values, [f.member_max[m] for m in f.members]), strict=True):
                    if ok:
                        since.setdefault((name, m), f.updated_ts)
                    else:
                        since.pop((name, m), None)
            alerting.evaluate(f, _qualified_since(since, f.members), alerted, batch)
        # Live, stage B re-evaluates a cluster as event time moves on, so one that still qualifies fires
        # once it has held for the rule's `for`; here time moves on to the end of the stored history, for
        # the clusters still there: a retired id's members moved on (or out) when it retired.
        for f in still_active(facts, retired):
            if end_ms > f.updated_ts:
                alerting.evaluate(replace(f, updated_ts=end_ms), _qualified_since(since, f.members), alerted, batch)
        out.append(batch)
    return out


def still_active(facts: list[ClusterFacts], retired: set[str]) -> list[ClusterFacts]:
    """The latest version of each cluster not ``retired``."""
    latest: dict[str, ClusterFacts] = {}
    for f in facts:  # in event-time order: the last one per id wins
        latest[f.cluster_id] = f
    return [f for cid, f in latest.items() if cid not in retired]
