"""Builders for the alerting tests: signatures_1m columns and rules files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml

from pipeline.alerting.engine import AlertSetup, AlertState, BatchFacts, evaluate_accounts
from pipeline.alerting.rules import DEFAULT_RULES, SCORE_RULE, load_rules

SIGNALS = ["distribution_probing", "template_sweep", "reasoning_elicitation"]
MIN_MS = 60_000


def page_threshold() -> float:
    """The score at which the packaged ``extraction_score_high`` rule pages (its ``threshold``)."""
    return float(load_rules()[SCORE_RULE].rule.params["threshold"])


def signatures(rows: list[tuple[str, int, float]], calls_1h: list[float] | None = None,
               points: list[list[float]] | None = None) -> dict[str, Any]:
    """signatures_1m columns for (account, minute, score) rows (given sorted by account, minute)."""
    n = len(rows)
    pts = points if points is not None else [[round(s * 0.6, 2), round(s * 0.4, 2), 0.5] for _, _, s in rows]
    return {
        "account_id": [a for a, _, _ in rows],
        "window_start": np.array([m * 60 for _, m, _ in rows], np.int64),
        "score": np.array([s for _, _, s in rows], np.float32),
        "calls_1h": np.array(calls_1h if calls_1h is not None else [500.0] * n, np.float32),
        "signal_names": [SIGNALS] * n,
        "signal_points": pts,
    }


def rules_doc() -> dict[str, Any]:
    return yaml.safe_load(DEFAULT_RULES.read_text())


def write_yaml(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def setup_from(tmp_path: Path, edit: Any = None, **kw: Any) -> AlertSetup:
    doc = rules_doc()
    if edit is not None:
        edit(doc)
    return AlertSetup(load_rules(write_yaml(tmp_path / "rules.yaml", doc)), **kw)


def evaluate(setup: AlertSetup, rows: list[tuple[str, int, float]], state: AlertState | None = None, *,
             now_min: int | None = None, raw: dict[str, Any] | None = None, **kw: Any):
    st = state if state is not None else AlertState()
    batch = None if raw is None else BatchFacts(raw["account_id"], raw)
    return evaluate_accounts(setup, signatures(rows, **kw), st, now_ms=None if now_min is None else now_min * MIN_MS,
                             batch=batch), st


def held(account: str, minutes: range, score: float) -> list[tuple[str, int, float]]:
    """(account, minute, score) rows: ``score`` on every minute of ``minutes``."""
    return [(account, m, score) for m in minutes]


def pages(rows: list[tuple[str, int, float]], *, score_threshold: float | None = None) -> list[tuple[str, str, int]]:
    """(rule, account, minute) of every page the packaged rules raise over ``rows``, sorted."""
    out, _ = evaluate(AlertSetup(load_rules(score_threshold=score_threshold)), sorted(rows, key=lambda r: r[:2]))
    return sorted((r.labels["alertname"], r.labels["account_id"], r.starts_at_ms // MIN_MS) for r in out.transitions)
