"""Alert rules as code: a versioned YAML file, validated at start, compiled once.

The packaged default is ``rules.v1.yaml``; ``DW_ALERT_RULES`` points at another file.
A bad file fails at start with ``RulesError`` naming the file and the field
(``rules[1].condition: unknown name 'scor' …``). Each rule's ``condition`` is compiled by
``condition.compile_condition`` (no Python is ever evaluated). ``DW_ALERT_SCORE_THRESHOLD``
overrides ``params.threshold`` of ``extraction_score_high`` and of every other account rule that has
one. docs/alerting.md is the file's reference.
"""

from __future__ import annotations

import ast
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipeline.alerting.condition import SIGNAL_PREFIX, Condition, ConditionError, compile_condition
from pipeline.config_file import load_model_file, repeated
from pipeline.scoring import ScoringConfig, load_scoring_config
from schemas.tables import SIGNATURES_1M

DEFAULT_RULES: Final = Path(__file__).with_name("rules.v1.yaml")
ACCOUNT: Final = "account"
CLUSTER: Final = "cluster"
PAGE: Final = "page"
# The rule DW_ALERT_SCORE_THRESHOLD tunes (its params.threshold).
SCORE_RULE: Final = "extraction_score_high"
THRESHOLD_PARAM: Final = "threshold"

# Account conditions read the numeric columns of signatures_1m (one source: the table spec).
_NUMERIC = re.compile(r"^(U?Int\d+|Float\d+)$")
ACCOUNT_NAMES: Final = tuple(name for name, ch_type in SIGNATURES_1M.columns if _NUMERIC.match(ch_type))
# Cluster conditions read a cluster version: stage B's score, member count, the members' max
# extraction scores (linking.clusters.member_aggregates: mean of the top three, mean, max), their
# calls, the score of what they take together (pooled_score: linking.pooled, their summed counters of
# the last 60 minutes through the scoring's ratio signals and volume gate); and, per member, that
# member's own max score.
CLUSTER_NAMES: Final = ("score", "size", "member_top_score", "member_mean_score", "member_max_score", "calls",
                        "pooled_score", "member_score")
# Labels the engine sets itself; a rule's own labels may not use them.
RESERVED_LABELS: Final = ("alertname", "severity", "account_id", "cluster_id", "model", "action", "mode")
# Placeholders an annotation template may use.
TEMPLATE_FIELDS: Final = ("rule", "account_id", "cluster_id", "score", "signals", "severity", "action", "mode",
                          "model", "members", "size")

Severity = Literal["info", "warning", "error", "critical"]
Action = Literal["review", "rate_limit", "suspend", "takedown"]
_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


class RulesError(ValueError):
    """The rules file is invalid; the message names the file and the field."""


def duration_minutes(text: str) -> int:
    """``'90s'`` is refused, ``'15m'`` → 15, ``'2h'`` → 120: frames are whole minutes."""
    match = _DURATION.match(text.strip())
    if not match:
        raise ValueError(f"expected a duration such as 0m, 5m, 2h or 1d, got {text!r}")
    seconds = int(match.group(1)) * _UNIT_S[match.group(2)]
    if seconds % 60:
        raise ValueError(f"{text!r} is not a whole number of minutes (rules are evaluated per 1-minute frame)")
    return seconds // 60


# A value of each placeholder's type: a template must format with these at start, not fail at firing.
TEMPLATE_SAMPLE: Final = {"rule": "r", "account_id": "a", "cluster_id": "c", "score": 1.0, "signals": "s",
                          "severity": "warning", "action": "review", "mode": PAGE, "model": "m", "members": "a, b",
                          "size": 2}


def _check_template(text: str) -> str:
    for _, name, _, _ in string.Formatter().parse(text):
        if name is None:
            continue
        if name not in TEMPLATE_FIELDS:  # also refuses attribute or index access ({x.y}, {x[0]})
            raise ValueError(f"unknown placeholder {{{name}}}; known: {', '.join(TEMPLATE_FIELDS)}")
    try:
        text.format(**TEMPLATE_SAMPLE)
    except (ValueError, IndexError) as exc:
        raise ValueError(f"template {text!r} does not format: {exc}") from None
    return text


class Annotations(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    summary: str = Field(min_length=1)
    description: str = ""
    runbook_url: str = ""

    @field_validator("summary", "description")
    @classmethod
    def _templates(cls, text: str) -> str:
        try:
            return _check_template(text)
        except ValueError as exc:
            raise ValueError(str(exc)) from None


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    subject: Literal["account", "cluster"]
    condition: str = Field(min_length=1)
    params: dict[str, float] = Field(default_factory=dict)
    for_: str = Field("0m", alias="for")
    max_gap: str = "0m"  # account rules: minutes without a true frame that a pending ``for`` survives
    resolve_after: str = "15m"
    severity: Severity
    severity_if: dict[Severity, str] = Field(default_factory=dict)  # first match on the firing row wins
    mode: Literal["page", "monitor"] = PAGE
    action: Action
    action_expires_after: str = "1d"  # the gateway drops the recommendation then, lifted or not
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: Annotations

    @field_validator("for_", "max_gap", "resolve_after", "action_expires_after")
    @classmethod
    def _duration(cls, text: str) -> str:
        duration_minutes(text)
        return text

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: dict[str, str]) -> dict[str, str]:
        for key in labels:
            if key in RESERVED_LABELS:
                raise ValueError(f"label {key!r} is set by distillwatch; reserved: {', '.join(RESERVED_LABELS)}")
            if not re.match(r"^[a-zA-Z_][a-zA-Z0-9_]*$", key):
                raise ValueError(f"label name {key!r} is not a Prometheus label name")
        return labels

    @model_validator(mode="after")
    def _consistent(self) -> Rule:
        if self.action == "takedown" and self.subject != CLUSTER:
            raise ValueError(f"rule {self.name!r}: action takedown is for cluster rules only")
        if self.max_gap_minutes and self.subject != ACCOUNT:
            raise ValueError(f"rule {self.name!r}: max_gap is for account rules only (a cluster is held by its score)")
        if duration_minutes(self.resolve_after) < 1:
            raise ValueError(f"rule {self.name!r}: resolve_after must be at least 1m")
        return self

    @property
    def for_minutes(self) -> int:
        return duration_minutes(self.for_)

    @property
    def max_gap_minutes(self) -> int:
        return duration_minutes(self.max_gap)

    @property
    def resolve_minutes(self) -> int:
        return duration_minutes(self.resolve_after)

    @property
    def action_expires_ms(self) -> int:
        return duration_minutes(self.action_expires_after) * 60_000


class RulesFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    version: int = Field(ge=1)
    rules: list[Rule] = Field(min_length=1)

    @field_validator("rules")
    @classmethod
    def _unique(cls, rules: list[Rule]) -> list[Rule]:
        if twice := repeated([r.name for r in rules]):
            raise ValueError(f"rule names must be unique; repeated: {twice}")
        return rules


@dataclass(frozen=True)
class CompiledRule:
    """A validated rule with its conditions compiled for its subject."""

    rule: Rule
    condition: Condition
    severity_if: tuple[tuple[str, Condition], ...]

    @property
    def name(self) -> str:
        return self.rule.name

    @property
    def columns(self) -> tuple[str, ...]:
        """Every column the rule's conditions read."""
        return tuple(sorted({*self.condition.columns, *(c for _, s in self.severity_if for c in s.columns)}))

    def severities(self, columns: dict[str, np.ndarray], rows: np.ndarray) -> list[str]:
        """The severity of each of ``rows``: the first ``severity_if`` that holds there, else ``severity``."""
        out = np.full(len(rows), self.rule.severity, dtype=object)
        undecided = np.ones(len(rows), bool)
        if len(rows):
            picked = {k: v[rows] for k, v in columns.items()}
            for severity, cond in self.severity_if:
                hit = undecided & cond(picked, len(rows))
                out[hit] = severity
                undecided &= ~hit
        return out.tolist()


@dataclass(frozen=True)
class RuleSet:
    version: int
    source: Path
    rules: tuple[CompiledRule, ...]

    def for_subject(self, subject: str) -> tuple[CompiledRule, ...]:
        return tuple(r for r in self.rules if r.rule.subject == subject)

    def __getitem__(self, name: str) -> CompiledRule:
        for r in self.rules:
            if r.name == name:
                return r
        raise KeyError(name)

    @property
    def account_columns(self) -> tuple[str, ...]:
        return tuple(sorted({c for r in self.for_subject(ACCOUNT) for c in r.columns}))


def lower_bound(rule: Rule, name: str) -> float:
    """The value ``name`` must reach for ``rule`` to hold: its top-level ``name >= N`` term (``and``-joined;
    ``N`` a number or one of its params), e.g. 60 for ``score`` of ``cluster_extraction``.

    For readers of the rules outside the engine (the Grafana dashboards' campaign threshold).
    Raises RulesError when no such term bounds ``name``.
    """
    body = ast.parse(rule.condition.strip(), mode="eval").body
    terms = body.values if isinstance(body, ast.BoolOp) and isinstance(body.op, ast.And) else [body]
    bounds = []
    for term in terms:
        if not isinstance(term, ast.Compare):
            continue
        operands = [term.left, *term.comparators]
        for left, op, right in zip(operands, term.ops, operands[1:], strict=False):
            if isinstance(op, ast.GtE) and isinstance(left, ast.Name) and left.id == name:
                bounds.append(_number(right, rule.params))
            elif isinstance(op, ast.LtE) and isinstance(right, ast.Name) and right.id == name:
                bounds.append(_number(left, rule.params))
    found = [b for b in bounds if b is not None]
    if not found:
        raise RulesError(f"rule {rule.name!r}: condition {rule.condition!r} has no top-level '{name} >= N' term")
    return max(found)  # every and-joined term must hold: the highest bound counts


def _number(node: ast.expr, params: Mapping[str, float]) -> float | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return float(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = _number(node.operand, params)
        return None if inner is None else -inner
    if isinstance(node, ast.Name) and node.id in params:
        return float(params[node.id])
    return None


def compile_rule(rule: Rule, signals: tuple[str, ...]) -> CompiledRule:
    """Compile ``rule``'s conditions; raises ConditionError naming the bad name."""
    names, sigs = (ACCOUNT_NAMES, signals) if rule.subject == ACCOUNT else (CLUSTER_NAMES, None)
    cond = compile_condition(rule.condition, names, signals=sigs, params=rule.params)
    sev = tuple((s, compile_condition(text, names, signals=sigs, params=rule.params))
                for s, text in rule.severity_if.items())
    return CompiledRule(rule, cond, sev)


def load_rules(path: Path | None = None, *, scoring: ScoringConfig | None = None,
               score_threshold: float | None = None) -> RuleSet:
    """Read, validate and compile the rules file (default ``rules.v1.yaml``).

    ``scoring`` gives the signal names ``signal.<name>`` may use (default: the packaged
    scoring file). ``score_threshold`` (DW_ALERT_SCORE_THRESHOLD) replaces ``params.threshold`` of
    ``extraction_score_high`` and of every account rule that has one. Raises RulesError naming the file and field.
    """
    source = path or DEFAULT_RULES
    parsed = load_model_file(RulesFile, source, RulesError)
    signals = tuple((scoring or load_scoring_config()).signals)
    rules = list(parsed.rules)
    if score_threshold is not None:
        if not any(r.name == SCORE_RULE and THRESHOLD_PARAM in r.params for r in rules):
            raise RulesError(f"{source}: DW_ALERT_SCORE_THRESHOLD needs a rule {SCORE_RULE!r} with "
                             f"params.{THRESHOLD_PARAM} (used in its condition)")
        # Every rule reading the page threshold follows it (the sustained and slow-burn rules stay under it).
        rules = [r.model_copy(update={"params": {**r.params, THRESHOLD_PARAM: score_threshold}})
                 if r.subject == ACCOUNT and THRESHOLD_PARAM in r.params else r for r in rules]
    compiled = []
    for i, rule in enumerate(rules):
        try:
            compiled.append(compile_rule(rule, signals))
        except ConditionError as exc:
            raise RulesError(f"{source}: rules[{i}].condition ({rule.name}): {exc}") from None
    return RuleSet(parsed.version, source, tuple(compiled))


def account_columns(signatures: Mapping[str, Any], names: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The float64 columns ``names`` from signatures_1m columns (as the Detector writes them or as
    read back from ClickHouse): plain columns as they are, ``signal.<x>`` from signal_names/points."""
    out: dict[str, np.ndarray] = {}
    wanted_signals = [n.removeprefix(SIGNAL_PREFIX) for n in names if n.startswith(SIGNAL_PREFIX)]
    if wanted_signals:
        out.update({SIGNAL_PREFIX + k: v for k, v in signal_points(signatures, wanted_signals).items()})
    for name in names:
        if not name.startswith(SIGNAL_PREFIX):
            out[name] = np.asarray(signatures[name], np.float64)
    return out


def signal_points(signatures: Mapping[str, Any], wanted: list[str]) -> dict[str, np.ndarray]:
    """Each wanted signal's points per row (0 where a row does not list it)."""
    names = signatures["signal_names"]
    points = signatures["signal_points"]
    n = len(names)
    out = {w: np.zeros(n, np.float64) for w in wanted}
    if n == 0:
        return out
    first = list(names[0])
    if all(x is names[0] or list(x) == first for x in names):
        # One scoring version for every row (the usual case): one 2-D array, one column each.
        matrix = np.asarray(points if isinstance(points, np.ndarray) else list(points), np.float32)
        for w in wanted:
            if w in first:
                out[w] = matrix[:, first.index(w)].astype(np.float64)
        return out
    for i, (row_names, row_points) in enumerate(zip(names, points, strict=True)):
        row = dict(zip(row_names, row_points, strict=True))
        for w in wanted:
            out[w][i] = float(np.float32(row.get(w, 0.0)))
    return out
