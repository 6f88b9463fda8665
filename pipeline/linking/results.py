"""``<group>-link-results``: what the linking process hands back to the detect workers.

The linking process cannot write ClickHouse itself (embedded chDB opens its data directory in one
process only), so every evaluation's cluster rows, alert rows and page transitions travel as a
``LinkResult`` to the workers' results consumer. ``split_result`` cuts one bigger than
``MAX_RESULT_BYTES`` into results that each fit; only the last carries ``drained_sources``.
Decoding raises ``MessageError``. The wire format: docs/linking.md ("Wire formats").
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import TypeVar, cast

import orjson

from pipeline.alerting.alert_rows import AlertRows
from pipeline.alerting.transitions import FIRING, RESOLVED, AlertTransition, State
from pipeline.linking.cluster_outputs import ClusterRows
from pipeline.linking.messages import ENVELOPE_VERSION, MessageError, open_message

# At most this many bytes per results message, below Kafka's default 1 MB limit with room to spare.
MAX_RESULT_BYTES = 900_000
RESULT_TYPE = "result"


@dataclass
class LinkResult:
    rows: ClusterRows = field(default_factory=ClusterRows)
    alerts: AlertRows = field(default_factory=AlertRows)
    transitions: list[AlertTransition] = field(default_factory=list)
    # Account -> its current cluster id, "" = no longer in a cluster (only the accounts that changed).
    cluster_of: dict[str, str] = field(default_factory=dict)
    drained_sources: list[str] = field(default_factory=list)  # detect sources whose drain completed
    stats: dict[str, object] = field(default_factory=dict)  # StageStats.as_dict() + process fields

    def is_empty(self) -> bool:
        """Nothing for ClickHouse, the outbox or the drain: only stats."""
        return not (len(self.rows) or len(self.alerts) or self.transitions or self.cluster_of
                    or self.drained_sources)


def _transition_dict(t: AlertTransition) -> dict[str, object]:
    return {"rule": t.rule, "state": t.state, "labels": dict(t.labels), "annotations": dict(t.annotations),
            "starts_at_ms": t.starts_at_ms, "ends_at_ms": t.ends_at_ms, "score": t.score,
            "signals": dict(t.signals)}


def encode_result(r: LinkResult) -> bytes:
    return orjson.dumps({
        "v": ENVELOPE_VERSION, "type": RESULT_TYPE, "rows": vars(r.rows), "alerts": vars(r.alerts),
        "transitions": [_transition_dict(t) for t in r.transitions], "cluster_of": r.cluster_of,
        "drained_sources": r.drained_sources, "stats": r.stats,
    }, option=orjson.OPT_SERIALIZE_NUMPY)


Columns = TypeVar("Columns", ClusterRows, AlertRows)


def _columns(cls: type[Columns], body: object, name: str) -> Columns:
    if not isinstance(body, dict):
        raise MessageError(f"{name!r} missing or not an object")
    cols = {}
    for f in fields(cls):
        col = body.get(f.name)
        if not isinstance(col, list):
            raise MessageError(f"column {name}.{f.name} missing or not a list")
        cols[f.name] = col
    if len({len(c) for c in cols.values()}) > 1:
        raise MessageError(f"columns of {name!r} differ in length")
    return cls(**cols)


def _transition(t: object) -> AlertTransition:
    if not isinstance(t, dict):
        raise MessageError("a transition is not an object")
    try:
        state = t["state"]
        if state not in (FIRING, RESOLVED):
            raise MessageError(f"transition state {state!r}")
        ends = t["ends_at_ms"]
        return AlertTransition(str(t["rule"]), cast(State, state), dict(t["labels"]), dict(t["annotations"]),
                               int(t["starts_at_ms"]), None if ends is None else int(ends), float(t["score"]),
                               {str(k): float(v) for k, v in dict(t["signals"]).items()})
    except MessageError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise MessageError(f"bad transition: {exc!r}") from None


def decode_result(value: bytes) -> LinkResult:
    """Parse one results message; raises MessageError when it is not a valid version-1 result."""
    body = open_message(value, "link result", RESULT_TYPE)
    transitions, cluster_of = body.get("transitions"), body.get("cluster_of")
    drained, stats = body.get("drained_sources"), body.get("stats")
    if not isinstance(transitions, list) or not isinstance(drained, list):
        raise MessageError("'transitions' or 'drained_sources' missing or not a list")
    if not isinstance(cluster_of, dict) or not isinstance(stats, dict):
        raise MessageError("'cluster_of' or 'stats' missing or not an object")
    return LinkResult(_columns(ClusterRows, body.get("rows"), "rows"),
                      _columns(AlertRows, body.get("alerts"), "alerts"),
                      [_transition(t) for t in transitions], {str(k): str(v) for k, v in cluster_of.items()},
                      [str(s) for s in drained], stats)


def _slice(columns: Columns, start: int, stop: int) -> Columns:
    return type(columns)(**{k: v[start:stop] for k, v in vars(columns).items()})


def _part(r: LinkResult, i: int, k: int, *, last: bool) -> LinkResult:
    """The i-th of k roughly equal parts of every list of ``r``."""
    def bounds(n: int) -> tuple[int, int]:
        return n * i // k, n * (i + 1) // k

    accounts = list(r.cluster_of.items())
    a0, a1 = bounds(len(accounts))
    t0, t1 = bounds(len(r.transitions))
    return LinkResult(_slice(r.rows, *bounds(len(r.rows))), _slice(r.alerts, *bounds(len(r.alerts))),
                      r.transitions[t0:t1], dict(accounts[a0:a1]), list(r.drained_sources) if last else [],
                      r.stats)


def _items(r: LinkResult) -> int:
    return len(r.rows) + len(r.alerts) + len(r.transitions) + len(r.cluster_of)


def split_result(result: LinkResult, max_bytes: int = MAX_RESULT_BYTES) -> list[tuple[LinkResult, bytes]]:
    """``result`` cut into results of at most ``max_bytes`` encoded, each with its encoding, in order.

    Only the last part names the drained sources (a worker sees its drain after every row);
    every part carries the stats. A single row bigger than ``max_bytes`` stays whole.
    """
    value = encode_result(result)
    if len(value) <= max_bytes or _items(result) <= 1:
        return [(result, value)]
    k = min(_items(result), len(value) // max_bytes + 1)
    out: list[tuple[LinkResult, bytes]] = []
    for i in range(k):
        out += split_result(_part(result, i, k, last=i == k - 1), max_bytes)
    return out

