"""Batches for the base tables, in the writer's column format, built to exercise the rollups.

Values repeat across rows (a few models, countries, accounts) so the views' GROUP BY has
something to merge, and every batch spans several minutes and hours.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from schemas.tables import TABLES

T0_S = 1_767_225_600  # 2026-01-01T00:00:00Z

Columns = dict[str, Any]


def _fill(table: str, n: int, rng: np.random.Generator) -> Columns:
    """Every insert column of ``table`` with plausible values of its type."""
    cols: Columns = {}
    for name, ch_type in TABLES[table].columns:
        if ch_type.startswith("DateTime64"):
            cols[name] = (T0_S * 1000 + rng.integers(0, 3 * 3_600_000, n)).astype(np.int64)
        elif ch_type.startswith("DateTime"):
            cols[name] = (T0_S + 60 * rng.integers(0, 180, n)).astype(np.int64)
        elif ch_type.startswith("Array(Float32"):
            cols[name] = [[float(x) for x in rng.random(2)] for _ in range(n)]
        elif ch_type.startswith("Array"):
            cols[name] = [[f"{name}-{k}" for k in rng.integers(0, 4, 2)] for _ in range(n)]
        elif "String" in ch_type:
            cols[name] = [f"{name}-{k}" for k in rng.integers(0, 4, n)]
        elif ch_type.startswith("Float"):
            cols[name] = (rng.random(n) * 10).astype(np.float32)
        elif ch_type.startswith("Int"):
            cols[name] = rng.integers(-1, 20, n).astype(np.dtype(ch_type.lower()))
        else:
            cols[name] = rng.integers(0, 5000, n).astype(np.dtype(ch_type.lower()))
    return cols


def api_calls(n: int, seed: int, accounts: int = 40) -> Columns:
    rng = np.random.default_rng(seed)
    cols = _fill("api_calls", n, rng)
    acct = rng.integers(0, accounts, n)
    cols["event_id"] = [f"ev-{seed}-{i}" for i in range(n)]
    cols["account_id"] = [f"acct-{a}" for a in acct]
    cols["api_key_id"] = [f"key-{a}-{k}" for a, k in zip(acct, rng.integers(0, 2, n), strict=True)]
    cols["client_ip"] = [
        f"203.0.{a}.{h}" if a % 3 else f"2001:db8:{a:x}:{h:x}::7" for a, h in zip(acct, rng.integers(1, 250, n),
                                                                                strict=True)
    ]
    cols["client_ip"][0] = "not-an-ip"  # skipped by ip_net, counted everywhere else
    cols["asn"] = np.where(acct % 5 == 0, 0, 64_500 + acct % 7).astype(np.uint32)
    cols["country"] = [["US", "DE", "BR", ""][a % 4] for a in acct]
    cols["network_type"] = [["residential", "hosting", "vpn"][a % 3] for a in acct]
    cols["model"] = [["big-1", "small-2"][k] for k in rng.integers(0, 2, n)]
    cols["endpoint"] = [["/v1/chat/completions", "/v1/responses"][k] for k in rng.integers(0, 2, n)]
    cols["status"] = rng.choice(np.array([200, 200, 200, 429, 500], np.uint16), n)
    cols["prompt_simhash"] = np.where(acct % 4 == 0, 0, rng.integers(1, 2**63, n) >> (acct % 50)).astype(np.uint64)
    cols["payment_fingerprint"] = [f"fp-{a % 6}" if a % 2 else "" for a in acct]
    return cols


def signatures(n: int, seed: int, accounts: int = 30) -> Columns:
    rng = np.random.default_rng(seed)
    cols = _fill("signatures_1m", n, rng)
    # One frame per (account, minute), as the pipeline writes them.
    slots = rng.choice(accounts * 180, n, replace=False)
    cols["account_id"] = [f"acct-{s % accounts}" for s in slots]
    cols["window_start"] = (T0_S + 60 * (slots // accounts)).astype(np.int64)
    score = (rng.random(n) * 100).astype(np.float32)
    score[:3] = [0.0, 100.0, 9.99]  # the band edges
    cols["score"] = score
    return cols


def alerts(n: int, seed: int) -> Columns:
    rng = np.random.default_rng(seed)
    cols = _fill("alerts", n, rng)
    cols["alert_id"] = [f"al-{seed}-{i}" for i in range(n)]
    cols["rule"] = [["extraction_score_high", "cluster_extraction"][k] for k in rng.integers(0, 2, n)]
    cols["severity"] = [["page", "ticket"][k] for k in rng.integers(0, 2, n)]
    cols["score"] = (50 + rng.random(n) * 50).astype(np.float32)
    return cols


def split(cols: Columns, parts: int) -> list[Columns]:
    """``cols`` cut into ``parts`` consecutive batches (several INSERT blocks)."""
    n = len(next(iter(cols.values())))
    bounds = np.linspace(0, n, parts + 1).astype(int)
    return [{k: v[a:b] for k, v in cols.items()} for a, b in itertools.pairwise(bounds)]
