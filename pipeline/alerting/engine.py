"""The rules engine: signatures_1m rows (accounts) or cluster versions in; alert rows and transitions out.

``evaluate_accounts`` is the one function the live worker (``Detector``) and ``distillwatch
backtest`` call for account rules. Each rule's condition is evaluated over whole columns, the
lifecycle runs in ``lifecycle.step_lifecycle``; only firings and resolutions reach Python objects.
A firing is always an ``alerts`` row, and a firing ``AlertTransition`` only in page mode when nothing
suppresses it. docs/alerting.md: "The engine's API (worker and backtest)", "Allow-list", "Lifecycle".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

import numpy as np

from pipeline.alerting.alert_rows import AlertRows
from pipeline.alerting.allowlist import AllowList, load_allowlist
from pipeline.alerting.lifecycle import MINUTE_MS, NONE, SubjectState, step_lifecycle
from pipeline.alerting.rules import ACCOUNT, PAGE, CompiledRule, Rule, RuleSet, account_columns, load_rules
from pipeline.alerting.transitions import FIRING, RESOLVED, AlertTransition, State
from pipeline.dashboards import account_page, campaign_page

MIN_POINTS = 1.0  # signals contributing less than this are not listed on an alert
FALSE_POSITIVE_PREFIX = "false_positive:"
_BASE = "|base"  # state key suffix of the shadow lifecycle at the normal threshold (raise_threshold)


class Suppressions(Protocol):
    """Analyst false positives (``pipeline.alerting.feedback.FeedbackSuppressions``)."""

    def lookup(self, rule: str, account_id: str, at_ms: int) -> tuple[str, str] | None: ...


@dataclass
class AlertContext:
    """What the engine reads from the rest of the worker; shared by its detectors, refreshed live.

    ``feedback``: the false positives (the worker reloads them on a timer). ``cluster_of``: the
    account's current cluster id, from linking stage B when it runs in this process.
    """

    feedback: Suppressions | None = None
    cluster_of: Callable[[str], str | None] | None = None


@dataclass(frozen=True)
class AlertSetup:
    """Rules, allow-list and links: loaded once per process, at start (errors name the file)."""

    rules: RuleSet
    allowlist: AllowList = field(default_factory=AllowList)
    grafana_url: str = ""
    context: AlertContext = field(default_factory=AlertContext)

    @classmethod
    def from_settings(cls, settings: Any, scoring: Any = None) -> AlertSetup:
        return cls(load_rules(settings.alert_rules, scoring=scoring, score_threshold=settings.alert_score_threshold),
                   load_allowlist(settings.allowlist), settings.grafana_url)


@dataclass
class AlertBatch:
    """One evaluation's output."""

    alerts: AlertRows = field(default_factory=AlertRows)
    transitions: list[AlertTransition] = field(default_factory=list)
    suppressed: Counter[tuple[str, str]] = field(default_factory=Counter)  # (rule, allowlist|false_positive)

    def extend(self, other: AlertBatch) -> None:
        self.alerts.extend(other.alerts)
        self.transitions.extend(other.transitions)
        self.suppressed.update(other.suppressed)


class AlertState:
    """Every account's lifecycle per rule, and the allow-list entries its keys/cards/ASNs reached.

    ``account_json``/``load_account``: one account's part, JSON-able, for its checkpoint.
    """

    def __init__(self) -> None:
        self.subjects: dict[str, dict[str, SubjectState]] = {}
        self.links: dict[str, set[str]] = {}
        # Accounts whose part changed since ``take_changed``: the detector re-checkpoints them even
        # when no frame of theirs closed (a resolution by the watermark, a lift, a new link).
        self.changed: set[str] = set()

    def take_changed(self) -> set[str]:
        changed, self.changed = self.changed, set()
        return changed

    def get(self, account: str, key: str) -> SubjectState | None:
        return self.subjects.get(account, {}).get(key)

    def put(self, account: str, key: str, state: SubjectState) -> None:
        self.changed.add(account)
        if state.idle:
            mine = self.subjects.get(account)
            if mine is not None:
                mine.pop(key, None)
                if not mine:
                    del self.subjects[account]
        else:
            self.subjects.setdefault(account, {})[key] = state

    def account_json(self, account: str) -> dict[str, object] | None:
        rules = self.subjects.get(account)
        links = self.links.get(account)
        if not rules and not links:
            return None
        out: dict[str, object] = {}
        if rules:
            out["r"] = {k: s.to_json() for k, s in rules.items()}
        if links:
            out["l"] = sorted(links)
        return out

    def load_account(self, account: str, data: Mapping[str, Any]) -> None:
        for key, value in (data.get("r") or {}).items():
            self.put(account, key, SubjectState.from_json(value))
        if data.get("l"):
            self.links[account] = set(data["l"])


@dataclass
class BatchFacts:
    """The decoded batch the frames closed in: the model label and allow-list links come from it."""

    account_ids: Sequence[str]
    raw: Mapping[str, object]
    _models: dict[str, str] | None = None

    def model_of(self, account: str) -> str:
        """The account's most used model among the batch's events ("" if it has none there)."""
        if self._models is None:
            counts: dict[str, Counter[str]] = {}
            models = self.raw.get("model")
            if models is not None:
                for a, m in zip(self.account_ids, models, strict=True):  # type: ignore[call-overload]
                    counts.setdefault(a, Counter())[str(m)] += 1
            self._models = {a: c.most_common(1)[0][0] for a, c in counts.items()}
        return self._models.get(account, "")


# --- labels and annotations ----------------------------------------------------------------------

def dashboard_url(grafana_url: str, *, account_id: str = "", cluster_id: str = "") -> str:
    if not grafana_url:
        return ""
    if cluster_id and not account_id:
        return campaign_page(grafana_url, cluster_id)
    return account_page(grafana_url, account_id)


def alert_labels(rule: Rule, severity: str, *, account_id: str, cluster_id: str, model: str) -> dict[str, str]:
    return {**rule.labels, "alertname": rule.name, "severity": severity, "account_id": account_id,
            "cluster_id": cluster_id, "model": model, "action": rule.action, "mode": rule.mode}


def alert_annotations(rule: Rule, labels: Mapping[str, str], *, score: float, signals: Sequence[str],
                      grafana_url: str, members: Sequence[str] = ()) -> dict[str, str]:
    values = {"rule": rule.name, "account_id": labels["account_id"], "cluster_id": labels["cluster_id"],
              "score": float(score), "signals": ", ".join(signals) or "none", "severity": labels["severity"],
              "action": rule.action, "mode": rule.mode, "model": labels["model"], "members": ", ".join(members),
              "size": len(members)}
    a = rule.annotations
    dashboard = (dashboard_url(grafana_url, cluster_id=labels["cluster_id"]) if members
                 else dashboard_url(grafana_url, account_id=labels["account_id"]))
    return {"summary": a.summary.format(**values), "description": a.description.format(**values),
            "runbook_url": a.runbook_url, "dashboard_url": dashboard}


def firing_record(labels: Mapping[str, str], annotations: Mapping[str, str], starts_ms: int, score: float,
                  signals: Mapping[str, float], suppressed_by: str) -> dict[str, object]:
    """What a firing alert's resolution must repeat (SubjectState.alert), JSON-able."""
    return {"s": int(starts_ms), "l": dict(labels), "n": dict(annotations), "sc": round(float(score), 2),
            "sg": dict(signals), "x": suppressed_by}


def firing_transition(record: Mapping[str, Any]) -> AlertTransition:
    return AlertTransition(record["l"]["alertname"], cast(State, FIRING), record["l"], record["n"], int(record["s"]),
                           None, float(record["sc"]), record["sg"])


def resolved_transition(record: Mapping[str, Any], ends_ms: int) -> AlertTransition:
    return AlertTransition(record["l"]["alertname"], cast(State, RESOLVED), record["l"], record["n"], int(record["s"]),
                           int(ends_ms), float(record["sc"]), record["sg"])


def pages(record: Mapping[str, Any]) -> bool:
    """Whether the alert paged: page mode and not suppressed (only those resolve to notifiers)."""
    return record["l"].get("mode") == PAGE and not record["x"]


def suppression_reason(suppressed_by: str) -> str:
    return suppressed_by.split(":", 1)[0]


# --- account rules ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Rows:
    """The batch's rows grouped by account (groups are contiguous runs of one account)."""

    group: np.ndarray  # int64 per row
    names: list[str]  # account per group
    minute: np.ndarray  # int64 per row
    columns: dict[str, np.ndarray]  # what the conditions read, float64
    signatures: Mapping[str, Any]


def _group_rows(signatures: Mapping[str, Any], needed: tuple[str, ...]) -> _Rows:
    accounts = np.asarray(signatures["account_id"], dtype=object)
    n = len(accounts)
    first = np.ones(n, bool)
    if n > 1:
        first[1:] = accounts[1:] != accounts[:-1]
    group = np.cumsum(first, dtype=np.int64) - 1
    minute = np.asarray(signatures["window_start"], np.int64) // 60
    cols = account_columns(signatures, needed)  # type: ignore[arg-type]
    return _Rows(group, accounts[first].tolist(), minute, cols, signatures)


def _row_signals(signatures: Mapping[str, Any], i: int) -> dict[str, float]:
    """Row ``i``'s signals of at least MIN_POINTS, strongest first (ties keep the file's order)."""
    names = signatures["signal_names"][i]
    raw = signatures["signal_points"][i]
    points = raw.tolist() if isinstance(raw, np.ndarray) else list(raw)  # float32 values, as stored
    keep = sorted((j for j, p in enumerate(points) if p >= MIN_POINTS), key=lambda j: -points[j])
    return {names[j]: round(float(points[j]), 2) for j in keep}


class _Evaluation:
    """One call of ``evaluate_accounts``: per-batch scratch shared by the rule passes."""

    def __init__(self, setup: AlertSetup, rows: _Rows, state: AlertState, batch: BatchFacts | None,
                 now_ms: int | None) -> None:
        self.setup, self.rows, self.state, self.batch = setup, rows, state, batch
        self.now_ms = now_ms
        self.out = AlertBatch()
        self.group_of = {a: g for g, a in enumerate(rows.names)}
        allow = setup.allowlist
        # Groups some allow-list entry may cover (usually none): decided per row below.
        self.listed = [g for g, a in enumerate(rows.names) if allow.may_cover(a, state.links.get(a, ()))] \
            if len(allow) else []

    def run(self, cr: CompiledRule) -> None:
        rows = self.rows
        n = len(rows.group)
        cond = cr.condition(rows.columns, n)
        raised_rows = np.zeros(n, bool)
        if self.listed:
            cond, raised_rows = self._apply_raises(cr, cond)
        self._lifecycle(cr, cr.name, cond, shadow=False)
        if raised_rows.any():
            # The normal threshold's own lifecycle for raised accounts: what it fires is recorded
            # as suppressed, so a raised threshold hides nothing silently.
            base = cr.condition(rows.columns, n)
            self._lifecycle(cr, cr.name + _BASE, base & raised_rows, shadow=True, effective=cond)

    def _apply_raises(self, cr: CompiledRule, cond: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows, allow = self.rows, self.setup.allowlist
        cond = cond.copy()
        raised = np.zeros(len(cond), bool)
        score = np.asarray(rows.signatures["score"], np.float64)
        for g in self.listed:
            account = rows.names[g]
            for i in np.flatnonzero(rows.group == g).tolist():
                decision = allow.decide(cr.name, account, self.state.links.get(account, ()),
                                        (int(rows.minute[i]) + 1) * MINUTE_MS)
                if decision is not None and not decision.exempt:
                    raised[i] = True
                    cond[i] = cond[i] and score[i] >= (decision.entry.raise_to or 0.0)
        return cond, raised

    def _lifecycle(self, cr: CompiledRule, key: str, cond: np.ndarray, *, shadow: bool,
                   effective: np.ndarray | None = None) -> None:
        rows, state = self.rows, self.state
        G = len(rows.names)
        pend, last, fire = (np.full(G, NONE, np.int64) for _ in range(3))
        records: dict[int, dict[str, object] | None] = {}
        had_state: set[int] = set()
        for account, mine in state.subjects.items():  # only pending or firing accounts have state
            st = mine.get(key)
            g = self.group_of.get(account)
            if st is not None and g is not None:
                pend[g], last[g], fire[g] = st.pending, st.last_true, st.firing
                records[g] = st.alert
                had_state.add(g)
        rule = cr.rule
        now_min = None if self.now_ms is None else self.now_ms // MINUTE_MS
        res = step_lifecycle(rows.group, rows.minute, cond, for_minutes=rule.for_minutes,
                             max_gap=rule.max_gap_minutes, resolve_minutes=rule.resolve_minutes, pending=pend,
                             last_true=last, firing=fire, now_minute=now_min)
        fired = np.flatnonzero(res.fired)
        if shadow and effective is not None:
            fired = fired[~effective[fired]]  # the raised lifecycle fired there too: not a suppression
        severities = cr.severities(rows.columns, fired)
        events = sorted([(int(r), 0, k) for k, r in enumerate(res.resolved_before_row.tolist())]
                        + [(int(i), 1, k) for k, i in enumerate(fired.tolist())])
        for _, kind, k in events:
            if kind == 0:
                g = int(res.resolved_group[k])
                record = records.pop(g, None)
                if record is not None and not shadow and pages(record):
                    self.out.transitions.append(resolved_transition(record, int(res.resolved_minute[k]) * MINUTE_MS))
            else:
                i = int(fired[k])
                records[int(rows.group[i])] = self._fire(cr, i, severities[k], shadow=shadow)
        for g in had_state | set(records) | set(np.unique(rows.group[cond]).tolist()):
            firing = int(res.firing[g])
            st = SubjectState(int(res.pending[g]), int(res.last_true[g]), firing,
                              records.get(g) if firing != NONE else None)
            if st.idle and g not in had_state:
                continue
            state.put(rows.names[g], key, st)

    def _fire(self, cr: CompiledRule, i: int, severity: str, *, shadow: bool) -> dict[str, object]:
        rows, rule, ctx = self.rows, cr.rule, self.setup.context
        account = rows.names[int(rows.group[i])]
        fired_ms = (int(rows.minute[i]) + 1) * MINUTE_MS
        score = float(np.float32(rows.signatures["score"][i]))
        signals = _row_signals(rows.signatures, i)
        cluster = (ctx.cluster_of(account) if ctx.cluster_of is not None else None) or ""
        model = self.batch.model_of(account) if self.batch is not None else ""
        labels = alert_labels(rule, severity, account_id=account, cluster_id=cluster, model=model)
        annotations = alert_annotations(rule, labels, score=score, signals=list(signals),
                                        grafana_url=self.setup.grafana_url)
        suppressed = self._suppressed_by(rule.name, account, fired_ms, shadow=shadow)
        self.out.alerts.add(alert_id=f"{rule.name}:{account}:{fired_ms}", fired_ms=fired_ms, account_id=account,
                            rule=rule.name, severity=severity, score=score, signals=list(signals),
                            points=list(signals.values()), window_start_s=int(rows.minute[i]) * 60,
                            cluster_id=cluster, mode=rule.mode, action=rule.action, suppressed_by=suppressed)
        record = firing_record(labels, annotations, fired_ms, score, signals, suppressed)
        if suppressed:
            self.out.suppressed[(rule.name, suppression_reason(suppressed))] += 1
        elif rule.mode == PAGE:
            self.out.transitions.append(firing_transition(record))
        return record

    def _suppressed_by(self, rule: str, account: str, at_ms: int, *, shadow: bool) -> str:
        """``allowlist:<id>`` / ``false_positive:<id>`` when something silences this firing, else ""."""
        allow = self.setup.allowlist
        decision = allow.decide(rule, account, self.state.links.get(account, ()), at_ms) if len(allow) else None
        if decision is not None and (decision.exempt or shadow):
            return decision.entry.suppressed_by
        feedback = self.setup.context.feedback
        found = feedback.lookup(rule, account, at_ms) if feedback is not None else None
        return FALSE_POSITIVE_PREFIX + found[0] if found else ""

    def sweep(self) -> None:
        """Resolve page alerts of accounts outside this batch whose quiet period ended by ``now``,
        alerts a new false positive or allow-list entry covers now, and alerts of removed rules."""
        known = {r.name: r.rule for r in self.setup.rules.for_subject(ACCOUNT)}
        now = self.now_ms
        for account in list(self.state.subjects):
            for key, st in list(self.state.subjects.get(account, {}).items()):
                rule = known.get(key.removesuffix(_BASE))
                gap = rule.max_gap_minutes if rule is not None else 0
                if st.pending != NONE and now is not None and now // MINUTE_MS >= st.last_true + 2 + gap:
                    # The minutes a pending run may skip closed without a true frame: it cannot continue.
                    st = SubjectState(int(NONE), st.last_true, st.firing, st.alert)
                    self.state.put(account, key, st)
                if st.firing == NONE:
                    continue
                record = st.alert
                if rule is None:  # its rule left the rules file
                    if record is not None and pages(record):
                        self.out.transitions.append(resolved_transition(record, now if now is not None
                                                                        else (st.last_true + 1) * MINUTE_MS))
                    self.state.put(account, key, SubjectState())
                    continue
                if now is None:
                    continue
                end_min = st.last_true + 1 + rule.resolve_minutes
                if now // MINUTE_MS >= end_min:
                    if record is not None and not key.endswith(_BASE) and pages(record):
                        self.out.transitions.append(resolved_transition(record, end_min * MINUTE_MS))
                    self.state.put(account, key, SubjectState(st.pending, st.last_true, int(NONE), None))
                elif record is not None and not key.endswith(_BASE) and pages(record):
                    silenced = self._suppressed_by(rule.name, account, now, shadow=False)
                    if silenced:  # a false positive or an allow-list entry since it fired: lift it now
                        self.out.transitions.append(resolved_transition(record, now))
                        self.out.suppressed[(rule.name, suppression_reason(silenced))] += 1
                        self.state.put(account, key, SubjectState(st.pending, st.last_true, st.firing,
                                                                  {**record, "x": silenced}))


def evaluate_accounts(setup: AlertSetup, signatures: Mapping[str, Any], state: AlertState, *,
                      now_ms: int | None = None, batch: BatchFacts | None = None) -> AlertBatch:
    """Run every account rule over signatures_1m rows; updates ``state``, returns rows and transitions.

    ``signatures``: signatures_1m columns (account_id, window_start in epoch seconds, score,
    signal_names, signal_points and the columns the rules read), each account's rows contiguous
    and in minute order; batches must follow each other in event time per account. ``now_ms``:
    the event-time watermark (every frame ending before it was given), for resolutions of
    quiet alerts; None (a backtest's end of data) resolves nothing by time. ``batch``: the
    decoded events, for the model label and allow-list links (optional).
    """
    rules = setup.rules.for_subject(ACCOUNT)
    if batch is not None and setup.allowlist.needs_batch_links:
        for account, ids in setup.allowlist.links_in_batch(batch.account_ids, batch.raw).items():
            known = state.links.setdefault(account, set())
            if not ids <= known:
                known.update(ids)
                state.changed.add(account)
    rows = _group_rows(signatures, setup.rules.account_columns)
    ev = _Evaluation(setup, rows, state, batch, now_ms)
    if len(rows.group):
        for cr in rules:
            ev.run(cr)
    ev.sweep()
    return ev.out
