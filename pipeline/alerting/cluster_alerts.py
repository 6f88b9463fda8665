"""Cluster rules (subject ``cluster``): evaluated by linking stage B on each re-evaluated cluster version.

The condition reads the cluster's values (``rules.CLUSTER_NAMES``) and is evaluated per member:
every member it holds for gets its own alert carrying the cluster's ``cluster_id``. State per
(rule, member) lives in stage B's ``alerted`` table. A member fires at its qualifying time
(``linking.alert_time``) plus ``for``; a firing alert keeps the cluster id it fired with, so on a
merge it resolves and fires again under the surviving id. Allow-list entries apply by account_id
only. Lifecycle, merges and allow-list: docs/alerting.md ("Lifecycle", "Allow-list").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from pipeline.alerting.engine import (
    FALSE_POSITIVE_PREFIX,
    AlertBatch,
    AlertSetup,
    alert_annotations,
    alert_labels,
    firing_record,
    firing_transition,
    pages,
    resolved_transition,
    suppression_reason,
)
from pipeline.alerting.lifecycle import MINUTE_MS, NONE, SubjectState
from pipeline.alerting.rules import CLUSTER, CompiledRule, load_rules

# A cluster version's values and its members' own max scores -> whether the condition holds, per member
# (``[members]``); values given as arrays of T times (alert_time: a pooled score per minute) -> ``[T, members]``.
Predicate = Callable[[Mapping[str, Any], Sequence[float]], np.ndarray]


@dataclass(frozen=True)
class ClusterFacts:
    """One cluster version, as its rules see it."""

    cluster_id: str
    members: tuple[str, ...]
    values: Mapping[str, float]  # rules.CLUSTER_NAMES
    updated_ts: int  # ms, event time of its latest evidence
    signals: list[str]  # score factors, then shared features
    points: list[float]  # their points (factors) and kind weights (features)
    member_max: Mapping[str, float]  # member -> its max extraction score


@cache
def default_setup() -> AlertSetup:
    """The packaged rules (for stage B built without a setup: tests, tools)."""
    return AlertSetup(load_rules())


def default_predicate() -> Predicate:
    """The packaged default cluster rule's condition (``cluster_extraction``)."""
    return predicate(default_setup().rules.for_subject(CLUSTER)[0])


def _times(values: Mapping[str, Any]) -> int | None:
    """T when any value is an array of T times, else None."""
    sizes = {np.size(v) for v in values.values() if np.ndim(v)}
    return sizes.pop() if sizes else None


def member_columns(values: Mapping[str, Any], member_scores: Sequence[float]) -> dict[str, np.ndarray]:
    """The condition's columns, one row per member: the cluster's values repeated, ``member_score`` its own.
    Values that are arrays of T times give T × members rows, time-major."""
    n = len(member_scores)
    times = _times(values) or 1
    columns = {k: np.repeat(np.broadcast_to(np.asarray(v, np.float64), times), n) for k, v in values.items()}
    columns["member_score"] = np.tile(np.asarray(member_scores, np.float64), times)
    return columns


def predicate(rule: CompiledRule) -> Predicate:
    """``rule``'s condition on one cluster version, per member (per time and member for arrays of times)."""
    def holds(values: Mapping[str, Any], member_scores: Sequence[float]) -> np.ndarray:
        times = _times(values)
        held = rule.condition(member_columns(values, member_scores), (times or 1) * len(member_scores))
        return held if times is None else held.reshape(times, len(member_scores))
    return holds


class ClusterAlerting:
    def __init__(self, setup: AlertSetup | None = None) -> None:
        self.setup = setup or default_setup()
        self.rules = self.setup.rules.for_subject(CLUSTER)
        # How far every input of the linking process is read (``pipeline.linking.watermark``; None: all),
        # moved by ``advance``: a member due later than that is not fired yet but kept in ``waiting``
        # (member -> due, ms), for stage B to evaluate again once the watermark has passed.
        self.watermark_ms: int | None = None
        self.waiting: dict[str, int] = {}

    def advance(self, watermark_ms: int | None) -> list[str]:
        """Move the watermark to ``watermark_ms`` (None: every input read to its end) and return the held
        members now due, no longer held: their clusters are to be evaluated again."""
        self.watermark_ms = watermark_ms
        due = [m for m, at in self.waiting.items() if watermark_ms is None or at <= watermark_ms]
        for member in due:
            del self.waiting[member]
        return due

    def evaluate(self, facts: ClusterFacts, since: Callable[[CompiledRule], Mapping[str, int]],
                 alerted: MutableMapping[str, object], out: AlertBatch) -> None:
        """Apply every cluster rule to one cluster version; ``since(rule)`` gives the members'
        qualifying times (called only when the rule holds). Changed member states are written
        back into ``alerted`` (a Faust table logs each assignment)."""
        columns = member_columns(facts.values, [facts.member_max.get(m, 0.0) for m in facts.members])
        rows = np.arange(len(facts.members))
        for cr in self.rules:
            holds = cr.condition(columns, len(rows))
            held = bool(holds.any())
            times = since(cr) if held else {}
            severities = cr.severities(columns, rows) if held else [""] * len(rows)
            for i, member in enumerate(facts.members):
                self._member(cr, facts, member, bool(holds[i]), times, severities[i] if holds[i] else "",
                             alerted, out)

    def _member(self, cr: CompiledRule, facts: ClusterFacts, member: str, holds: bool, times: Mapping[str, int],
                severity: str, alerted: MutableMapping[str, object], out: AlertBatch) -> None:
        rule = cr.rule
        entry = _entry(alerted.get(member), cr.name)
        st = SubjectState.from_json(entry[cr.name]) if cr.name in entry else SubjectState()
        now_min = facts.updated_ts // MINUTE_MS
        if st.firing != NONE and st.alert is not None and st.alert["l"].get("cluster_id") != facts.cluster_id:
            # The member's campaign is now another cluster (its cluster merged into this one): the alert
            # under the old id resolves here, and the member fires again under this id if it qualifies,
            # so Alertmanager moves it into the surviving campaign's group.
            merged_ms = max(facts.updated_ts, int(st.alert["s"]))
            if pages(st.alert):
                out.transitions.append(resolved_transition(st.alert, merged_ms))
            if holds:
                # After the resolved alert (alerts are keyed by account, rule and time), however late it fires.
                fired_ms = max(times.get(member, facts.updated_ts) + rule.for_minutes * MINUTE_MS, merged_ms,
                               int(st.alert["s"]) + 1)
                self._start(cr, facts, member, fired_ms, severity, SubjectState(), entry, alerted, out,
                            not_before_ms=fired_ms)
            else:
                _store(cr.name, member, SubjectState(), entry, alerted)
            return
        if st.firing != NONE:
            if holds:
                if now_min <= st.last_true:
                    return
                st.last_true = now_min
            elif now_min >= st.last_true + 1 + rule.resolve_minutes:
                if st.alert is not None and pages(st.alert):
                    out.transitions.append(resolved_transition(
                        st.alert, (st.last_true + 1 + rule.resolve_minutes) * MINUTE_MS))
                st = SubjectState()
            else:
                return
        elif holds:
            self._start(cr, facts, member, times.get(member, facts.updated_ts) + rule.for_minutes * MINUTE_MS,
                        severity, st, entry, alerted, out)
            return
        else:
            return
        _store(cr.name, member, st, entry, alerted)

    def _start(self, cr: CompiledRule, facts: ClusterFacts, member: str, fired_ms: int, severity: str,
               st: SubjectState, entry: dict[str, Any], alerted: MutableMapping[str, object], out: AlertBatch,
               not_before_ms: int | None = None) -> None:
        """Fire ``member`` at ``fired_ms`` once the evidence reaches it (else it stays pending in ``st``)
        and every input is read that far (else it waits for the watermark). ``not_before_ms`` (a merge): if
        it does not fire now, it never fires earlier (kept as ``st.pending``, a minute)."""
        if st.pending != NONE:
            fired_ms = max(fired_ms, st.pending * MINUTE_MS)
        if facts.updated_ts < fired_ms or (self.watermark_ms is not None and self.watermark_ms < fired_ms):
            if facts.updated_ts >= fired_ms:
                # An input is not read that far: the evidence that makes this cluster another may wait there.
                self.waiting[member] = min(fired_ms, self.waiting.get(member, fired_ms))
            if not_before_ms is not None:
                st = SubjectState(pending=-(-not_before_ms // MINUTE_MS))
            # else pending: the condition has not held for `for` yet
        else:
            record = self._fire(cr, facts, member, fired_ms, severity, out)
            minute = fired_ms // MINUTE_MS
            st = SubjectState(int(NONE), max(facts.updated_ts // MINUTE_MS, minute), minute, record)
        _store(cr.name, member, st, entry, alerted)

    def _fire(self, cr: CompiledRule, facts: ClusterFacts, member: str, fired_ms: int, severity: str,
              out: AlertBatch) -> dict[str, object]:
        rule = cr.rule
        score = float(facts.values["score"])
        labels = alert_labels(rule, severity, account_id=member, cluster_id=facts.cluster_id, model="")
        annotations = alert_annotations(rule, labels, score=score, signals=facts.signals,
                                        grafana_url=self.setup.grafana_url, members=facts.members)
        suppressed = self._suppressed_by(cr.name, member, fired_ms, facts.member_max.get(member, 0.0))
        out.alerts.add(alert_id=f"{rule.name}:{facts.cluster_id}:{member}:{fired_ms}", fired_ms=fired_ms,
                       account_id=member, rule=rule.name, severity=severity, score=score,
                       signals=list(facts.signals), points=list(facts.points),
                       window_start_s=fired_ms // MINUTE_MS * 60, cluster_id=facts.cluster_id, mode=rule.mode,
                       action=rule.action, suppressed_by=suppressed)
        signals = dict(zip(facts.signals, facts.points, strict=True))
        record = firing_record(labels, annotations, fired_ms, score, signals, suppressed)
        if suppressed:
            out.suppressed[(rule.name, suppression_reason(suppressed))] += 1
        elif pages(record):
            out.transitions.append(firing_transition(record))
        return record

    def _suppressed_by(self, rule: str, member: str, at_ms: int, member_max: float) -> str:
        decision = self.setup.allowlist.decide(rule, member, (), at_ms)
        if decision is not None and (decision.exempt or member_max < (decision.entry.raise_to or 0.0)):
            return decision.entry.suppressed_by
        feedback = self.setup.context.feedback
        found = feedback.lookup(rule, member, at_ms) if feedback is not None else None
        return FALSE_POSITIVE_PREFIX + found[0] if found else ""


def _store(rule: str, member: str, st: SubjectState, entry: dict[str, Any],
           alerted: MutableMapping[str, object]) -> None:
    """Write a member's state back (one assignment: a Faust table logs it); nothing when it stays idle."""
    if st.idle:
        if rule not in entry:
            return
        del entry[rule]
    else:
        entry[rule] = st.to_json()
    alerted[member] = entry


def _entry(value: object, rule: str) -> dict[str, Any]:
    """A member's ``alerted`` value as {rule: state}; an int (older releases: the last firing time in
    ms of the one cluster rule) becomes a firing state without a record, so nothing re-fires."""
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, int | float):
        minute = int(value) // MINUTE_MS
        return {rule: SubjectState(int(NONE), minute, minute, None).to_json()}
    return {}
