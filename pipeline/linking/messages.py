"""Wire formats of the linking topics: columnar JSON (orjson), one message per batch, never per row.

Observation messages (``<group>-link-observations``, by feature) and account updates with every
closed frame's calls and ``FRAME_COUNTERS`` (``<group>-link-edges``), each with its drain marker;
link results and feedback sets share the envelope (``open_message``, ``ENVELOPE_VERSION``).
Written as ``VERSION`` (4), read as 1 to 4; an older reader refuses newer messages. Kind
weights are not on the wire. Decoding raises ``MessageError`` for anything malformed.
The formats field by field, and what each version added: docs/linking.md ("Wire formats",
"Timing correlation (`sync`)": Versions).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from pipeline.kernels.layout import FRAME_MS
from pipeline.linking.observations import AccountSummary, Observations

# The linking messages as written (2: frames' calls per minute; 3: and their FRAME_COUNTERS; 4: the event time
# the detect source has read its input up to, ``wm``, on every message and observations partition: ``watermark``).
VERSION = 4
READ_VERSIONS = (1, 2, 3, 4)  # ... and as read
# The closed frames' additive counters (signatures_1m columns) the account updates carry besides calls (version 3):
# those the scoring features are ratios of (pooled.PooledScorer derives which signals they make computable).
FRAME_COUNTERS = ("prompt_tokens", "completion_tokens", "reasoning_tokens", "reasoning_calls", "deep_logprob_calls",
                  "rate_limited_calls")
ENVELOPE_VERSION = 1  # the link results and feedback sets (results.py, feedback_feed.py)
_NUMPY = orjson.OPT_SERIALIZE_NUMPY
# Rows per message, at most: keeps every message far below Kafka's default 1 MB
# (message.max.bytes, the producer's max_request_size) whatever the batch size.
MAX_ROWS = 5_000


def _row_chunks(n: int, max_rows: int = MAX_ROWS) -> list[slice]:
    return [slice(start, min(start + max_rows, n)) for start in range(0, n, max_rows)]


class MessageError(ValueError):
    """A linking message that cannot be decoded (wrong JSON, version, type or columns)."""


@dataclass(frozen=True)
class ObservationBatch:
    src: str
    seq: int
    features: list[str]
    accounts: list[str]
    f: list[int]
    a: list[int]
    ts: list[int]
    sample: list[int]
    wm: int | None = None  # version 4: the event time its source has read its input up to (ms)


@dataclass(frozen=True)
class MemberChanges:
    """Stage A → B, in memory: the memberships one observation message changed (stage B derives the links)."""

    joined: list[tuple[str, str]] = field(default_factory=list)  # (feature, new member)
    dropped: list[tuple[str, list[str]]] = field(default_factory=list)  # (feature made popular, its members)
    hubbed: list[tuple[str, list[str]]] = field(default_factory=list)  # (feature made a hub, its members then)

    def __len__(self) -> int:
        return len(self.joined) + len(self.dropped) + len(self.hubbed)


@dataclass(frozen=True)
class AccountUpdates:
    src: str
    account: list[str]
    calls: list[int]
    ts: list[int]
    score: list[float | None]
    max_score: list[float | None]
    best: list[float | None]
    best_ts: list[int | None]
    # Every frame the batch closed (version 2): its account (index into ``account``), epoch minute, calls.
    frame_account: list[int] = field(default_factory=list)
    frame_minute: list[int] = field(default_factory=list)
    frame_calls: list[int] = field(default_factory=list)
    # Version 3: counter name (FRAME_COUNTERS) -> per frame; empty when the sender did not send them.
    frame_counters: dict[str, list[int]] = field(default_factory=dict)
    wm: int | None = None  # version 4: the event time its source has read its input up to (ms)

    def __len__(self) -> int:
        return len(self.account)


@dataclass(frozen=True)
class EndMarker:
    src: str
    partition: int | None = None  # set by the linking process: the observations partition it came from


Message = ObservationBatch | MemberChanges | AccountUpdates | EndMarker


# --- encoding -----------------------------------------------------------------------------


def pack_observations(obs: Observations, n_partitions: int, src: str, seq: int, wm: int | None = None,
                      max_rows: int = MAX_ROWS) -> dict[int, list[bytes]]:
    """Messages per partition that has observations (each of at most ``max_rows`` rows). With ``wm`` (the
    event time the source has read its input up to) every message carries it, and every other partition
    gets an empty message with it, so each partition tells how far the source got (``watermark``)."""
    stamp = {} if wm is None else {"wm": wm}
    out: dict[int, list[bytes]] = {}
    if len(obs):
        out = _observation_messages(obs, n_partitions, src, seq, stamp, max_rows)
    if wm is not None:
        empty = orjson.dumps({"v": VERSION, "type": "obs", "src": src, "seq": seq, **stamp, "features": [],
                              "accounts": [], "f": [], "a": [], "ts": [], "sample": []})
        for p in range(n_partitions):
            out.setdefault(p, [empty])
    return out


def _observation_messages(obs: Observations, n_partitions: int, src: str, seq: int, stamp: dict[str, int],
                          max_rows: int) -> dict[int, list[bytes]]:
    owner = obs.partitions(n_partitions)[obs.feature_index]
    order = np.argsort(owner, kind="stable")
    bounds = np.flatnonzero(np.diff(owner[order])) + 1
    out: dict[int, list[bytes]] = {}
    for part_rows in np.split(order, bounds):
        messages = out.setdefault(int(owner[part_rows[0]]), [])
        for chunk in _row_chunks(len(part_rows), max_rows):
            rows = part_rows[chunk]
            f_used, f_local = np.unique(obs.feature_index[rows], return_inverse=True)
            a_used, a_local = np.unique(obs.account_index[rows], return_inverse=True)
            messages.append(orjson.dumps({
                "v": VERSION, "type": "obs", "src": src, "seq": seq, **stamp,
                "features": [obs.features[i] for i in f_used.tolist()],
                "accounts": [obs.accounts[i] for i in a_used.tolist()],
                "f": f_local.astype(np.int64), "a": a_local.astype(np.int64),
                "ts": obs.ts_ms[rows], "sample": obs.sample[rows],
            }, option=_NUMPY))
    return out


def pack_end(src: str, partition: int | None = None) -> bytes:
    body: dict[str, object] = {"v": VERSION, "type": "end", "src": src}
    if partition is not None:
        body["partition"] = partition
    return orjson.dumps(body)


def account_updates(
    summary: AccountSummary,
    frame_accounts: Sequence[str],
    frame_start_s: np.ndarray,
    frame_score: np.ndarray,
    max_scores: Mapping[str, float],
    src: str,
    frame_calls: np.ndarray | None = None,
    frame_counters: Mapping[str, np.ndarray] | None = None,
    wm: int | None = None,
) -> AccountUpdates:
    """Per account of a detect batch: calls, latest event time, latest and best closed frame, and the
    calls (and ``frame_counters``: FRAME_COUNTERS, all or none) of every closed frame.

    ``frame_*`` are the batch's closed frames (signatures_1m rows: account, window start in
    seconds, score, calls; without ``frame_calls`` no frame's calls are sent); ``max_scores``
    the detector's running maximum per account. An account
    with calls but no closed frame gets None for the frame fields. ``best``/``best_ts`` (the
    highest-scoring frame of the batch, the earliest on ties) let stage B know when each
    score was reached whatever the batching (``alert_time``).

    Vectorised over the frames (a batch closes a frame for most of its accounts): one
    sort picks each account's latest frame (the last row on equal ends) and its best
    (highest score rounded to 3 places, then the earliest end, then the first row).
    """
    n = len(frame_accounts)
    names_f = np.asarray(frame_accounts, dtype=object) if n else np.empty(0, dtype=object)
    end_ms = (np.asarray(frame_start_s).astype(np.int64) + 60) * 1000 if n else np.empty(0, np.int64)
    value = np.array([round(v, 3) for v in np.asarray(frame_score, dtype=np.float64).tolist()], dtype=np.float64)
    names = sorted(set(summary.accounts).union(frame_accounts))
    code_of = {a: i for i, a in enumerate(names)}
    code = np.fromiter((code_of[a] for a in names_f), dtype=np.int64, count=n)
    rows = np.arange(n)
    latest_end = np.zeros(len(names), np.int64)
    latest_val = np.full(len(names), np.nan)
    best_val = np.full(len(names), np.nan)
    best_end = np.zeros(len(names), np.int64)
    has_frame = np.zeros(len(names), bool)
    if n:
        order = np.lexsort((rows, end_ms, code))  # by account, end, row: the group's last is the latest
        last = order[np.r_[code[order][1:] != code[order][:-1], True]]
        latest_end[code[last]], latest_val[code[last]] = end_ms[last], value[last]
        order = np.lexsort((rows, end_ms, -value, code))  # by account, score desc, end, row: first is best
        first = order[np.r_[True, code[order][1:] != code[order][:-1]]]
        best_val[code[first]], best_end[code[first]] = value[first], end_ms[first]
        has_frame[code] = True
    calls = np.zeros(len(names), np.int64)
    last_ts = np.zeros(len(names), np.int64)
    summary_codes = np.fromiter((code_of[a] for a in summary.accounts), dtype=np.int64, count=len(summary.accounts))
    calls[summary_codes] = summary.calls
    last_ts[summary_codes] = summary.last_ts_ms
    ts = np.where(has_frame, np.maximum(last_ts, latest_end), last_ts)
    framed = has_frame.tolist()
    latest = latest_val.tolist()
    counted = np.empty(0, np.int64)
    if frame_calls is not None and n:
        frame_calls = np.asarray(frame_calls, dtype=np.int64)
        counted = np.flatnonzero(frame_calls > 0)
        counted = counted[np.lexsort((end_ms[counted], code[counted]))]  # by account, then minute
    return AccountUpdates(
        src, names, calls.tolist(), ts.tolist(),
        [v if f else None for v, f in zip(latest, framed, strict=True)],
        [round(float(max_scores.get(a, v)), 3) if f else None for a, v, f in zip(names, latest, framed, strict=True)],
        [v if f else None for v, f in zip(best_val.tolist(), framed, strict=True)],
        [e if f else None for e, f in zip(best_end.tolist(), framed, strict=True)],
        code[counted].tolist(), (end_ms[counted] // FRAME_MS - 1).tolist(),
        frame_calls[counted].tolist() if frame_calls is not None else [],
        {n: np.asarray(frame_counters[n], np.int64)[counted].tolist() for n in FRAME_COUNTERS}
        if frame_calls is not None and frame_counters is not None else {},
        wm,
    )


def pack_accounts(updates: AccountUpdates, max_rows: int = MAX_ROWS) -> list[bytes]:
    """Messages of at most ``max_rows`` accounts and frames (each account of a batch is in one message only,
    with its frames)."""
    owner = np.asarray(updates.frame_account, np.int64)
    # Rows per account: itself and its frames; messages are cut between accounts.
    weight = np.bincount(owner, minlength=len(updates)) + 1
    ends = np.cumsum(weight)
    out = []
    first = 0
    while first < len(updates):
        last = max(first + 1, int(np.searchsorted(ends, (ends[first - 1] if first else 0) + max_rows, "right")))
        frames = np.flatnonzero((owner >= first) & (owner < last)).tolist()
        out.append(orjson.dumps({
            "v": VERSION, "type": "accounts", "src": updates.src, "account": updates.account[first:last],
            "calls": updates.calls[first:last], "ts": updates.ts[first:last], "score": updates.score[first:last],
            "max_score": updates.max_score[first:last], "best": updates.best[first:last],
            "best_ts": updates.best_ts[first:last],
            "frame_account": [updates.frame_account[i] - first for i in frames],
            "frame_minute": [updates.frame_minute[i] for i in frames],
            "frame_calls": [updates.frame_calls[i] for i in frames],
            **{f"frame_{n}": [col[i] for i in frames] for n, col in updates.frame_counters.items()},
            **({} if updates.wm is None else {"wm": updates.wm})}))
        first = last
    return out


# --- decoding -----------------------------------------------------------------------------


def _columns(body: dict[str, object], names: tuple[str, ...]) -> list[list[object]]:
    cols = []
    for name in names:
        col = body.get(name)
        if not isinstance(col, list):
            raise MessageError(f"column {name!r} missing or not a list")
        cols.append(col)
    if len({len(c) for c in cols}) > 1:
        raise MessageError(f"columns {list(names)} differ in length")
    return cols


def open_message(value: bytes, what: str, kind: str | None = None,
                 versions: tuple[int, ...] = (ENVELOPE_VERSION,)) -> dict[str, Any]:
    """The JSON object of a message of one of ``versions`` (of type ``kind`` when given); MessageError naming
    ``what`` otherwise. The linking messages, the link results and the feedback sets share this envelope."""
    try:
        body = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise MessageError(f"{what} is not JSON: {exc}") from None
    if not isinstance(body, dict) or body.get("v") not in versions or (kind is not None and body.get("type") != kind):
        raise MessageError(f"not a version-{'/'.join(map(str, versions))} {what}")
    return body


def decode(value: bytes) -> Message:
    """Parse one linking message; raises MessageError when it is not a valid version-1 to -4 message."""
    body = open_message(value, "linking message", versions=READ_VERSIONS)
    kind = body.get("type")
    src = str(body.get("src", ""))
    wm = body.get("wm")
    if wm is not None and (not isinstance(wm, int) or isinstance(wm, bool)):
        raise MessageError(f"wm must be an event time in ms, not {wm!r}")
    if kind == "obs":
        f, a, ts, sample = _columns(body, ("f", "a", "ts", "sample"))
        features, accounts = _columns(body, ("features",))[0], _columns(body, ("accounts",))[0]
        return ObservationBatch(src, int(body.get("seq", 0)), features, accounts, f, a, ts, sample, wm)  # type: ignore[arg-type]
    if kind == "accounts":
        cols = _columns(body, ("account", "calls", "ts", "score", "max_score", "best", "best_ts"))
        frames: list[list[object]] = [[], [], []]
        if body["v"] >= 2:
            frames = _columns(body, ("frame_account", "frame_minute", "frame_calls"))
            if not all(isinstance(i, int) and 0 <= i < len(cols[0]) for i in frames[0]):
                raise MessageError("frame_account must index the message's accounts")
        counters: dict[str, list[object]] = {}
        if body["v"] >= 3 and any(f"frame_{n}" in body for n in FRAME_COUNTERS):  # all or none (not sent)
            named = _columns(body, ("frame_calls", *(f"frame_{n}" for n in FRAME_COUNTERS)))
            counters = dict(zip(FRAME_COUNTERS, named[1:], strict=True))
        return AccountUpdates(src, *cols, *frames, counters, wm)  # type: ignore[arg-type]
    if kind == "end":
        partition = body.get("partition")
        return EndMarker(src, int(partition) if partition is not None else None)
    raise MessageError(f"unknown message type {kind!r}")
