"""The two linking stages as plain classes over mappings: Faust-free, so tests drive them with dicts.

``FeatureStage`` (stage A) owns the features' memberships: one observation message in, one
``MemberChanges`` out (handed to stage B in memory). ``ClusterStage`` (stage B) reads the same
memberships (``link_state``: links derived, no pair stored), sees every member change and
account update, and returns changed ``clusters`` rows and alerts. Drain barrier: stage B is
drained once it holds the marker of every observations partition and the edges marker of each
of its ``drain_sources``; with ``defer_alerts`` cluster alerts are evaluated there, once, at the
same event times as live. Details: docs/linking.md ("Topology", "Event time and determinism").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.alerting.alert_rows import AlertRows
from pipeline.alerting.cluster_alerts import predicate
from pipeline.alerting.engine import AlertBatch, AlertSetup
from pipeline.alerting.rules import CompiledRule
from pipeline.alerting.transitions import AlertTransition
from pipeline.linking.alert_time import add_step, qualified_since
from pipeline.linking.cluster_outputs import ClusterRows, ClusterTracker
from pipeline.linking.clusters import Cluster, cluster_id, describe_cluster
from pipeline.linking.config import LinkingConfig
from pipeline.linking.link_state import LinkState
from pipeline.linking.membership import Member, kind_of, observe, template_relatives
from pipeline.linking.messages import AccountUpdates, EndMarker, MemberChanges, Message, ObservationBatch
from pipeline.linking.pooled import PooledEvidence

# {"calls", "ts", "score", "score_ts", "max", "steps"}: steps is the max-score staircase (alert_time).
AccountState = dict[str, Any]


@dataclass
class StageStats:
    """Counters of both stages (what /stats shows)."""

    observations: int = 0
    edges: int = 0  # (new member, existing member) pairs formed (not stored: FeatureUpdate.pairs)
    popular_features: int = 0
    hub_features: int = 0  # features past their cap made hubs instead of popular (tpl, sync)
    account_updates: int = 0
    linked_accounts: int = 0
    clusters: int = 0
    cluster_rows: int = 0
    cluster_alerts: int = 0
    cluster_alerts_by_severity: Counter[str] = field(default_factory=Counter)
    # "<rule>:<reason>" -> member firings recorded but not paged (reason allowlist | false_positive)
    cluster_alerts_suppressed: Counter[str] = field(default_factory=Counter)
    bad_messages: int = 0
    markers: int = 0
    # Seconds spent, to see which stage limits the throughput.
    stage_a_s: float = 0.0  # stage A rules (event loop)
    stage_b_s: float = 0.0  # stage B rules and cluster evaluation (event loop)
    stage_b_write_s: float = 0.0  # ClickHouse writes of cluster rows and alerts

    def as_dict(self) -> dict[str, object]:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in self.__dict__.items()}


class FeatureStage:
    """Stage A: ``features`` maps feature -> membership state (``membership`` module)."""

    def __init__(self, features: MutableMapping[str, dict[str, object]], config: LinkingConfig,
                 stats: StageStats | None = None) -> None:
        self.features = features
        self.config = config
        self.stats = stats or StageStats()

    def handle(self, batch: ObservationBatch) -> MemberChanges:
        """Apply one observation message; the members it added and the features it made popular."""
        by_feature: dict[int, list[Member]] = {}
        accounts = batch.accounts
        for f, ai, ts, sample in zip(batch.f, batch.a, batch.ts, batch.sample, strict=True):
            by_feature.setdefault(f, []).append((accounts[ai], ts, sample))
        out = MemberChanges()
        for f, seen in by_feature.items():
            feature = batch.features[f]
            state = self.features.get(feature)
            relatives = None
            mine: dict[str, list[int]] | None = {} if state is None else state.get("m")  # type: ignore[assignment]
            # Relatives only matter to a feature below its cap (None: a hub or popular) that gains a member.
            if mine is not None and kind_of(feature) == "tpl" and any(a not in mine for a, _, _ in seen):
                samples = [x for _, x in mine.values()] + [x for _, _, x in seen]
                relatives = template_relatives(self.features, feature, samples, self.config)
            update = observe(state, feature, seen, self.config, relatives)
            if update.state is not None:
                self.features[feature] = update.state  # a whole value: mappings may log each change
            if update.popular_ts is not None:
                out.dropped.append((feature, update.dropped))
            if update.hub_ts is not None:
                out.hubbed.append((feature, update.hubbed))
            out.joined.extend((feature, account) for account in update.joined)
            self.stats.edges += update.pairs
        self.stats.observations += len(batch.f)
        self.stats.popular_features += len(out.dropped)
        self.stats.hub_features += len(out.hubbed)
        return out


@dataclass
class StageOutput:
    rows: ClusterRows = field(default_factory=ClusterRows)
    alerts: AlertRows | None = None
    drained: bool = False  # this call completed the drain barrier
    # Firing and resolved page alerts of cluster rules, for the outbox and the actions topic.
    transitions: list[AlertTransition] = field(default_factory=list)
    suppressed: Counter[tuple[str, str]] = field(default_factory=Counter)  # (rule, reason) -> firings


def apply_account_updates(accounts: MutableMapping[str, AccountState], updates: AccountUpdates) -> set[str]:
    """Fold a detect batch's account updates into ``accounts``; returns the accounts whose state changed."""
    changed = set()
    rows = zip(updates.account, updates.calls, updates.ts, updates.score, updates.max_score, updates.best,
               updates.best_ts, strict=True)
    for account, calls, ts, score, max_score, best, best_ts in rows:
        cur = dict(accounts.get(account) or {"calls": 0, "ts": 0, "score": 0.0, "score_ts": 0, "max": 0.0,
                                             "steps": []})
        cur["calls"] += calls
        cur["ts"] = max(cur["ts"], ts)
        if score is not None and ts >= cur["score_ts"]:
            cur["score"], cur["score_ts"] = score, ts
        if max_score is not None:
            cur["max"] = max(cur["max"], max_score)
        if best is not None and best_ts is not None:
            cur["steps"] = add_step(cur["steps"], best_ts, best)
        accounts[account] = cur
        changed.add(account)
    return changed


class ClusterStage:
    """Stage B over three mappings: stage A's memberships (read only), account state, last cluster alert
    per account."""

    def __init__(self, config: LinkingConfig, features: Mapping[str, dict[str, object]],
                 accounts: MutableMapping[str, AccountState], alerted: MutableMapping[str, object], *,
                 drain_sources: Collection[str], partitions: int, defer_alerts: bool = False,
                 stats: StageStats | None = None, alerting: AlertSetup | None = None,
                 pooled: PooledEvidence | None = None) -> None:
        """``defer_alerts`` (bounded input): evaluate cluster alerts once, at the drain, on all the evidence.
        ``alerting``: the rules (cluster rules), allow-list and feedback (default: the packaged rules).
        ``pooled``: the members' counters per minute (the pooled cluster evidence; default a new one, fed by
        the account updates this stage handles)."""
        self.config = config
        self.pooled = pooled if pooled is not None else PooledEvidence(config)
        self.defer_alerts = defer_alerts
        self.features = features
        self.accounts = accounts
        self.expected_markers = frozenset({(src, p) for src in drain_sources for p in range(partitions)}
                                          | {(src, None) for src in drain_sources})
        self.stats = stats or StageStats()
        self.tracker = ClusterTracker(config, alerted, alerting=alerting, accounts=accounts)
        # Account -> id of its cluster as of the last evaluation: a plain dict the detect step's
        # alerts read for their cluster_id label (from a worker thread: reads only, no traversal).
        self.cluster_ids: dict[str, str] = {}
        self._changed_ids: set[str] = set()  # accounts whose entry changed since take_cluster_changes
        self.markers: set[tuple[str, int | None]] = set()
        self.drained = False
        self._links: LinkState | None = None
        self._components: dict[str, frozenset[str]] = {}  # as of the last evaluation
        self._full = True  # evaluate every cluster at the next call

    @property
    def links(self) -> LinkState:
        if self._links is None:
            self._links = LinkState(self.features, self.config)
            self.tracker.forget()
            self._full = True
        return self._links

    def take_cluster_changes(self) -> dict[str, str]:
        """Account -> cluster id ("" = in none) for the accounts whose cluster changed since the last call."""
        changed, self._changed_ids = self._changed_ids, set()
        return {a: self.cluster_ids.get(a, "") for a in sorted(changed)}

    @property
    def alerts_held(self) -> int:
        """Members whose cluster alert is due but held for the inputs' watermark."""
        return len(self.tracker.alerting.waiting)

    def current_id(self, account: str) -> str | None:
        members = self._components.get(account)
        return cluster_id(members) if members else None

    def handle(self, messages: list[Message], *, watermark_ms: int | None = None) -> StageOutput:
        """Apply messages in order, then re-evaluate the clusters they touched.

        ``watermark_ms``: how far every input's evidence is read (``watermark``; None: all of it). A
        cluster alert due later waits for it; its members are evaluated again once it has passed."""
        links = self.links
        touched: set[str] = set()
        # Deferred (bounded), alerts are evaluated at the drain only, where every input is read.
        touched.update(self.tracker.alerting.advance(None if self.defer_alerts else watermark_ms))
        dropped: list[str] = []
        for msg in messages:
            if isinstance(msg, MemberChanges):
                for feature, account in msg.joined:
                    partners = links.join(feature, account)
                    touched.add(account)
                    if kind_of(feature) not in links.strong:  # a strong feature's partners are in one set
                        touched.update(partners)
                for feature, members in msg.dropped:
                    links.drop(feature, members)
                    touched.update(members)
                    dropped += members
                for _, members in msg.hubbed:  # their pairs through it become the hub's unions
                    touched.update(members)
                    dropped += members
            elif isinstance(msg, AccountUpdates):
                changed = apply_account_updates(self.accounts, msg)
                self.pooled.handle(msg)
                touched.update(a for a in changed if links.linked(a))
                self.stats.account_updates += len(msg)
            elif isinstance(msg, EndMarker):
                self.markers.add((msg.src, msg.partition))
                self.stats.markers = len(self.markers)
        if dropped:
            links.relink(dropped)  # a union-find cannot split: their clusters rebuilt from the memberships left
        drained_now = not self.drained and self.expected_markers <= self.markers
        full = self._full or drained_now
        self._full = False
        self._components = links.components()
        out = self._evaluate(list(self._components) if full else touched, final=drained_now)
        if drained_now:
            self.drained = out.drained = True
        return out

    def _since(self, cluster: Cluster, rule: CompiledRule) -> Mapping[str, int]:
        members = frozenset(cluster.members)
        # Enumerated again rather than kept from describe_cluster: at a drain that would be every pair at once.
        return qualified_since(members, self.links.pair_evidence(members), self.accounts, self.config,
                               predicate(rule), self.pooled, self.links.hub_links(members))

    def _evaluate(self, accounts: list[str] | set[str], *, final: bool) -> StageOutput:
        clusters: list[Cluster] = []
        seen: set[str] = set()
        for account in sorted(accounts):
            if account in seen:
                continue
            members = self._components.get(account)
            if members:
                seen |= members
                clusters.append(describe_cluster(members, self.links.pair_evidence(members), self.accounts,  # type: ignore[arg-type]
                                                 self.config, self.links.label, self.pooled.at,
                                                 self.links.hub_links(members)))
            elif self.cluster_ids.pop(account, None) is not None:
                self._changed_ids.add(account)
        for cluster in clusters:
            ids = self.cluster_ids
            self._changed_ids.update(m for m in cluster.members if ids.get(m) != cluster.cluster_id)
            ids.update(dict.fromkeys(cluster.members, cluster.cluster_id))
        found = AlertBatch()
        rows, alerts = self.tracker.emit(clusters, self.current_id, self._since,
                                         alerts=final or not self.defer_alerts, exact=final, out=found)
        st = self.stats
        st.linked_accounts = len(self._components)
        st.clusters = len({id(m) for m in self._components.values()})
        st.cluster_rows += len(rows)
        st.cluster_alerts += len(alerts)
        st.cluster_alerts_by_severity.update(alerts.severity)
        st.cluster_alerts_suppressed.update({f"{rule}:{reason}": n for (rule, reason), n in found.suppressed.items()})
        return StageOutput(rows, alerts, transitions=found.transitions, suppressed=found.suppressed)
