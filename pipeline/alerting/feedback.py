"""Analyst feedback on alerts: the ``alert_feedback`` table's writer and reader.

An analyst records a verdict on an account's alerts (``distillwatch alerts ack|resolve|
false-positive|confirm``): one row per verdict, never updated. ``rule`` '' covers every rule.
A false positive carries ``suppress_until`` (recorded_at + DW_FEEDBACK_SUPPRESS_DAYS) and stops
paging for that account and rule until then, unless a later ``confirmed`` verdict overrides it.

``FeedbackSuppressions`` is the rules engine's view: loaded once (the worker reloads it every
~30 s), then ``lookup`` is a dict access per firing, no I/O. Times are epoch milliseconds.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pipeline.hashing import stable_id
from schemas.tables import ALERT_FEEDBACK

Verdict = Literal["ack", "resolved", "false_positive", "confirmed"]
VERDICTS: tuple[Verdict, ...] = ("ack", "resolved", "false_positive", "confirmed")
FALSE_POSITIVE: Verdict = "false_positive"
CONFIRMED: Verdict = "confirmed"
ALL_RULES = ""  # a verdict with this rule covers every rule
_DAY_MS = 86_400_000


@dataclass(frozen=True)
class Feedback:
    """One analyst verdict, as stored in ``alert_feedback``."""

    feedback_id: str
    recorded_at_ms: int
    account_id: str
    rule: str
    verdict: Verdict
    reason: str
    analyst: str
    suppress_until_ms: int  # 0 unless verdict == false_positive

    def covers(self, rule: str) -> bool:
        return self.rule == ALL_RULES or self.rule == rule

    def columns(self) -> dict[str, list[Any]]:
        """The row as alert_feedback insert columns (DateTime64 as epoch ms)."""
        return {"feedback_id": [self.feedback_id], "recorded_at": [self.recorded_at_ms],
                "account_id": [self.account_id], "rule": [self.rule], "verdict": [self.verdict],
                "reason": [self.reason], "analyst": [self.analyst], "suppress_until": [self.suppress_until_ms]}


def new_feedback(account_id: str, verdict: str, reason: str, analyst: str, *, rule: str = ALL_RULES,
                 suppress_days: float = 7.0, now_ms: int | None = None) -> Feedback:
    """Build a validated verdict; raises ValueError naming the bad field.

    ``suppress_days`` sets ``suppress_until`` of a false positive (pass
    ``settings.feedback_suppress_days``). The id hashes every field, so recording the same
    verdict again (a retried insert) stores one row.
    """
    account_id, reason, analyst, rule = account_id.strip(), reason.strip(), analyst.strip(), rule.strip()
    if not account_id:
        raise ValueError("account_id: must not be empty")
    if verdict not in VERDICTS:
        raise ValueError(f"verdict: {verdict!r} is not one of {', '.join(VERDICTS)}")
    if not reason:
        raise ValueError("reason: must not be empty (say why, for the next on-call)")
    if not analyst:
        raise ValueError("analyst: must not be empty (give --analyst or set $USER)")
    if suppress_days <= 0:
        raise ValueError(f"suppress_days: must be > 0, got {suppress_days}")
    now = int(time.time() * 1000) if now_ms is None else int(now_ms)
    until = now + round(suppress_days * _DAY_MS) if verdict == FALSE_POSITIVE else 0
    feedback_id = stable_id(account_id, rule, verdict, reason, analyst, now, size=10)
    return Feedback(feedback_id, now, account_id, rule, verdict, reason, analyst, until)  # type: ignore[arg-type]


def record(client: Any, database: str, feedback: Feedback) -> None:
    """Insert one verdict (idempotent: the feedback id is the insert's dedup token).

    Raises ClickHouseUnavailable / ClickHouseRejected (pipeline.sinks.clickhouse).
    """
    # Imported on use, here and in load_feedback: the linking process needs this module's types, not a
    # ClickHouse client (about 20 MB resident: docs/benchmarks.md, "Replay").
    from pipeline.sinks.clickhouse import ClickHouseWriter

    ClickHouseWriter(client, database).write(ALERT_FEEDBACK.name, feedback.columns(),
                                             dedup_token=feedback.feedback_id)


def load_feedback(client: Any, database: str, *, accounts: Sequence[str] | None = None,
                  verdicts: Sequence[str] | None = None, as_of_ms: int | None = None) -> list[Feedback]:
    """Verdicts recorded at or before ``as_of_ms`` (default: all), oldest first.

    ``accounts`` / ``verdicts`` narrow the read when given.
    """
    from pipeline.sinks.clickhouse import query_rows  # see record

    where = ["1"]
    params: dict[str, Any] = {}
    if accounts is not None:
        where.append("account_id IN {accounts:Array(String)}")
        params["accounts"] = list(accounts)
    if verdicts is not None:
        where.append("verdict IN {verdicts:Array(String)}")
        params["verdicts"] = list(verdicts)
    if as_of_ms is not None:
        where.append("recorded_at <= fromUnixTimestamp64Milli({as_of:Int64}, 'UTC')")
        params["as_of"] = int(as_of_ms)
    sql = (f"SELECT feedback_id, toUnixTimestamp64Milli(recorded_at) AS recorded_at_ms, account_id, rule, "
           f"verdict, reason, analyst, toUnixTimestamp64Milli(suppress_until) AS suppress_until_ms "
           f"FROM {ALERT_FEEDBACK.qualified(database)} FINAL WHERE {' AND '.join(where)} "
           f"ORDER BY recorded_at, feedback_id")
    return [Feedback(r["feedback_id"], int(r["recorded_at_ms"]), r["account_id"], r["rule"], r["verdict"],
                     r["reason"], r["analyst"], int(r["suppress_until_ms"]))
            for r in query_rows(client, sql, params)]


def latest_covering(entries: Iterable[Feedback], rule: str) -> Feedback | None:
    """The newest of ``entries`` (one account's, oldest first) that applies to ``rule``."""
    found = None
    for entry in entries:
        if entry.covers(rule):
            found = entry
    return found


class FeedbackSuppressions:
    """False-positive suppressions and verdict sets, as of the moment they were loaded.

    Per account and rule the newest false_positive-or-confirmed verdict decides: a false
    positive suppresses evaluations whose event time is before its ``suppress_until`` (also
    those before it was recorded: a lagging worker or a replay is covered too); a confirmed
    attack lifts any earlier false positive. ack and resolved change nothing here.
    """

    def __init__(self, entries: Iterable[Feedback] = ()) -> None:
        # The deciding verdicts, oldest first: what the set is built from (the worker publishes them
        # to the linking process, pipeline/linking/feedback_feed.py), and equal for equal sets.
        self.entries: tuple[Feedback, ...] = tuple(
            e for e in sorted(entries, key=lambda e: (e.recorded_at_ms, e.feedback_id))
            if e.verdict in (FALSE_POSITIVE, CONFIRMED))
        self._by_account: dict[str, list[Feedback]] = {}
        for entry in self.entries:
            self._by_account.setdefault(entry.account_id, []).append(entry)
        # The newest verdict per account, any rule: what reports mark the account with.
        newest = {account: entries[-1].verdict for account, entries in self._by_account.items()}
        self.confirmed_accounts: frozenset[str] = frozenset(a for a, v in newest.items() if v == CONFIRMED)
        self.false_positive_accounts: frozenset[str] = frozenset(
            a for a, v in newest.items() if v == FALSE_POSITIVE)

    @classmethod
    def load(cls, client: Any, database: str, *, as_of_ms: int | None = None) -> FeedbackSuppressions:
        """The verdicts recorded up to ``as_of_ms`` (default: now) in ``database``."""
        as_of = int(time.time() * 1000) if as_of_ms is None else as_of_ms
        return cls(load_feedback(client, database, verdicts=(FALSE_POSITIVE, CONFIRMED), as_of_ms=as_of))

    def __len__(self) -> int:
        return len(self.entries)

    def lookup(self, rule: str, account_id: str, at_ms: int) -> tuple[str, str] | None:
        """``(feedback_id, verdict)`` of the false positive silencing ``rule`` for the account at
        event time ``at_ms``, or None when it may page."""
        entries = self._by_account.get(account_id)
        if not entries:
            return None
        decisive = latest_covering(entries, rule)
        if decisive is None or decisive.verdict != FALSE_POSITIVE or at_ms >= decisive.suppress_until_ms:
            return None
        return decisive.feedback_id, decisive.verdict

    def verdict_of(self, account_id: str) -> str | None:
        """``false_positive``, ``confirmed`` or None: the account's newest such verdict (any rule)."""
        if account_id in self.confirmed_accounts:
            return CONFIRMED
        if account_id in self.false_positive_accounts:
            return FALSE_POSITIVE
        return None
