"""Read everything about an account or a campaign into one ``Investigation`` (jobs/investigate/result.py).

``investigate(client, database, target)`` takes a clickhouse-connect client and a
database, so tests and the CLI share it. Every query is in ``queries.py``: rollups and
primary-key ranges, a handful per call whatever the number of members (each reads all
members at once with ``account_id IN {accounts}``).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from clickhouse_connect.driver.client import Client

from jobs.investigate import queries as q
from jobs.investigate.campaign_rule import campaign_threshold
from jobs.investigate.links import LINK_KINDS, member_links
from jobs.investigate.result import (
    AccountPage,
    Alert,
    ClusterInfo,
    ClusterVersion,
    Entity,
    Feedback,
    Harvest,
    Investigation,
    Link,
    ModelUse,
    ScorePoint,
    SharedTemplate,
    TrafficBucket,
)
from pipeline.linking.config import LinkingConfig, load_linking_config
from pipeline.sinks.clickhouse import query_rows

CLUSTER_ID: Final = re.compile(r"^c-[0-9a-f]{8}$")  # pipeline/linking: "c-" + 8 hex
EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
# A model is "newly released" when its first call in the whole dataset comes this long after the
# dataset's first call (models called from the start were there before) and inside the period.
NEW_MODEL_AFTER: Final = timedelta(hours=1)
PER_KIND: Final = 200  # busiest values read per account and kind (links, templates searched for near-duplicates)
PER_KIND_LISTED: Final = 50  # values listed on the page per kind
ENTITY_KINDS: Final = (*q.NETWORK_KINDS, q.TEMPLATE)
MAX_LISTED: Final = 20  # other accounts named per shared template
SHARED_TEMPLATES: Final = 25  # shared templates listed per account


class InvestigateError(ValueError):
    """The target names neither an account nor a cluster, or a bad argument."""


def investigate(client: Client, database: str, target: str, *, since: datetime | None = None,
                linking: LinkingConfig | None = None, now: datetime | None = None,
                rules_path: Path | None = None, where: str = "") -> Investigation:
    """Everything about ``target`` (an account id, or a cluster id ``c-xxxxxxxx``) from ``since`` on.

    ``rules_path``: the alert rules file (default the packaged one): its cluster rule's score threshold
    tells a campaign from merely linked accounts. ``where``: the data dir or DSN, named in errors.
    Raises InvestigateError when ``target`` is neither, ClickHouseUnavailable/Rejected
    (pipeline.sinks.clickhouse) when a query fails.
    """
    reader = _Reader(client, database)
    config = linking or load_linking_config()
    start = since or EPOCH
    cluster_id = target if CLUSTER_ID.match(target) and reader.count(q.CLUSTER_EXISTS, cluster=target) else None
    if cluster_id is None and not reader.count(q.ACCOUNT_EXISTS, account=target):
        raise InvestigateError(f"{target!r} is neither an account nor a cluster in database {database!r}"
                               f"{' of ' + where if where else ''} (cluster ids look like c-1a2b3c4d)")
    if cluster_id is None:
        found = reader.rows(q.CLUSTER_OF_ACCOUNT, account=target)
        member_of = found[0]["cluster_id"] if found else None
    else:
        member_of = cluster_id
    cluster = _cluster(reader, member_of, config, campaign_threshold(rules_path)) if member_of else None
    accounts = cluster.members if cluster_id and cluster else [target]
    releases = _releases(reader)
    new_models = _new_models(releases, start)
    pages = _pages(reader, accounts, start, config, cluster.cluster_id if cluster else None, releases, new_models)
    return Investigation(
        target=target, target_kind="cluster" if cluster_id else "account", database=database, since=since,
        generated_at=now or datetime.now(UTC), cluster=cluster, pages=pages,
        harvest=_campaign_harvest(reader, pages, start) if len(pages) > 1 else pages[0].harvest,
        new_models=new_models, campaign_values=_campaign_values(reader, pages, start) if len(pages) > 1 else [],
    )


def _campaign_values(reader: _Reader, pages: Sequence[AccountPage], start: datetime) -> list[Entity]:
    """The values listed on any member's page (network values, shared templates), totalled over every member."""
    listed = {(e.kind, e.value) for p in pages for e in p.entities}
    listed |= {(q.TEMPLATE, t.simhash) for p in pages for t in p.shared_templates}
    if not listed:
        return []
    rows = reader.rows(q.CAMPAIGN_VALUES, accounts=[p.account_id for p in pages],
                       kinds=sorted({k for k, _ in listed}), values=sorted({v for _, v in listed}), since=_ts(start))
    return sorted((Entity(r["kind"], r["value"], int(r["calls"]), _utc(r["first_seen"]), _utc(r["last_seen"]))
                   for r in rows if (r["kind"], r["value"]) in listed), key=lambda e: (e.kind, e.value))


class _Reader:
    """Runs the templates of ``queries`` against one database; failures raise ClickHouseError."""

    def __init__(self, client: Client, database: str) -> None:
        self.client = client
        self.database = database
        present = self.rows(q.TABLE_EXISTS, database=database, names=["alert_feedback", "entity_accounts_1h"])
        self.tables = {r["name"] for r in present}
        self.entity_table = "entity_accounts_1h" if "entity_accounts_1h" in self.tables else "account_entities_1h"
        self._entities: dict[datetime, dict[str, list[dict[str, Any]]]] = {}

    def rows(self, template: str, **params: Any) -> list[dict[str, Any]]:
        return query_rows(self.client, q.sql(template, self.database), params)

    def entities(self, accounts: Sequence[str], start: datetime) -> dict[str, list[dict[str, Any]]]:
        """Per account its busiest ENTITY_KINDS values from ``start`` on; each account is read once per start
        (the cluster's links and the pages need the same rows)."""
        cache = self._entities.setdefault(start, {})
        missing = [a for a in accounts if a not in cache]
        if missing:
            for a in missing:
                cache[a] = []
            for r in self.rows(q.ENTITIES, accounts=missing, kinds=list(ENTITY_KINDS), per_kind=PER_KIND,
                               since=_ts(start)):
                cache[r["account_id"]].append(r)
        return {a: cache[a] for a in accounts}

    def count(self, template: str, **params: Any) -> int:
        rows = self.rows(template, **params)
        return int(next(iter(rows[0].values()))) if rows else 0


def _utc(value: datetime) -> datetime:
    # clickhouse-connect returns naive datetimes for DateTime('UTC') columns.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _ts(value: datetime) -> str:
    """A DateTime64(3) query parameter (UTC)."""
    return _utc(value).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


# --- cluster -------------------------------------------------------------------------------


def _cluster(reader: _Reader, cluster_id: str, config: LinkingConfig,
             threshold: float | None) -> ClusterInfo | None:
    found = reader.rows(q.CLUSTER_BY_ID, cluster=cluster_id)
    if not found:
        return None
    row = found[0]
    members = list(row["account_ids"])
    history = [ClusterVersion(int(r["version"]), _utc(r["updated_ts"]), int(r["size"]), float(r["score"]),
                              bool(r["active"])) for r in reader.rows(q.CLUSTER_HISTORY, cluster=cluster_id)]
    return ClusterInfo(
        cluster_id=cluster_id, active=bool(row["active"]), members=members, score=float(row["score"]),
        shared_features=list(row["shared_features"]),
        factors={n: float(p) for n, p in zip(row["factor_names"], row["factor_points"], strict=True)},
        first_seen=_utc(row["first_seen_ts"]), updated=_utc(row["updated_ts"]), history=history,
        links=_links(reader, members, config), link_threshold=config.link_threshold,
        campaign_threshold=threshold,
    )


def _links(reader: _Reader, members: list[str], config: LinkingConfig) -> list[Link]:
    values: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    templates: dict[str, list[int]] = defaultdict(list)
    for account, rows in reader.entities(members, EPOCH).items():
        for r in rows:
            if r["kind"] in LINK_KINDS:
                values[account][r["kind"]].add(r["value"])
            elif r["kind"] == q.TEMPLATE:
                templates[account].append(int(r["value"], 16))
    popular: set[tuple[str, str]] = set()
    for kind, link_kind in LINK_KINDS.items():
        shared = _shared_values(values, kind)
        if not shared:
            continue
        counts = reader.rows(q.with_entity_table(q.VALUE_ACCOUNTS, reader.entity_table), kind=kind,
                             values=sorted(shared))
        cap = config.kinds[link_kind].cap
        popular |= {(kind, r["value"]) for r in counts if int(r["accounts"]) > cap}
    return member_links(values, templates, popular, config)


def _shared_values(values: dict[str, dict[str, set[str]]], kind: str) -> set[str]:
    seen: set[str] = set()
    shared: set[str] = set()
    for by_kind in values.values():
        vs = by_kind.get(kind, set())
        shared |= seen & vs
        seen |= vs
    return shared


def _templates(reader: _Reader, accounts: list[str], start: datetime) -> dict[str, dict[str, dict[str, Any]]]:
    """Per account its busiest prompt SimHashes (16 hex) -> their rollup row (calls, first/last seen)."""
    return {a: {r["value"]: r for r in rows if r["kind"] == q.TEMPLATE}
            for a, rows in reader.entities(accounts, start).items()}


# --- account pages -------------------------------------------------------------------------


def _pages(reader: _Reader, accounts: list[str], start: datetime, config: LinkingConfig,
           cluster_id: str | None, releases: dict[str, datetime],
           new_models: dict[str, datetime]) -> list[AccountPage]:
    since = _ts(start)
    hours: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in reader.rows(q.TRAFFIC_HOURLY, accounts=accounts, since=since):
        hours[r["account_id"]].append(r)
    spans = [(_utc(r["first_seen"]), _utc(r["last_seen"])) for rs in hours.values() for r in rs]
    span = (max(s[1] for s in spans) - min(s[0] for s in spans)) if spans else timedelta(0)
    bucket_s = 60 if span <= timedelta(hours=6) else 600 if span <= timedelta(days=3) else 3600
    scores: dict[str, list[ScorePoint]] = defaultdict(list)
    for r in reader.rows(q.SCORES, accounts=accounts, since=since, bucket_s=bucket_s):
        scores[r["account_id"]].append(ScorePoint(_utc(r["bucket"]), float(r["max_score"]), list(r["top_signals"])))
    alerts: dict[str, list[Alert]] = defaultdict(list)
    for r in reader.rows(q.ALERTS, accounts=accounts, since=since):
        alerts[r["account_id"]].append(Alert(r["alert_id"], _utc(r["fired_ts"]), _utc(r["minute"]), r["rule"],
                                             r["severity"], float(r["score"]), list(r["signals"]),
                                             [float(p) for p in r["signal_points"]], r["mode"], r["suppressed_by"]))
    first_alerts = {r["account_id"]: _utc(r["first_alert"]) for r in reader.rows(q.FIRST_ALERTS, accounts=accounts)}
    entities: dict[str, list[Entity]] = defaultdict(list)
    for account, rows in reader.entities(accounts, start).items():
        listed: dict[str, int] = defaultdict(int)
        for r in rows:  # busiest first within each kind
            if r["kind"] in q.NETWORK_KINDS and listed[r["kind"]] < PER_KIND_LISTED:
                listed[r["kind"]] += 1
                entities[account].append(Entity(r["kind"], r["value"], int(r["calls"]), _utc(r["first_seen"]),
                                                _utc(r["last_seen"])))
    shared = _shared_templates(reader, accounts, start, config)
    models = _models(reader, accounts, start, releases, new_models)
    feedback = _feedback(reader, accounts)
    pages = []
    for account in accounts:
        rows = hours.get(account, [])
        hourly = [TrafficBucket(_utc(r["hour"]), int(r["calls"]), int(r["prompt_tokens"]),
                                int(r["completion_tokens"]), int(r["reasoning_tokens"])) for r in rows]
        pages.append(AccountPage(
            account_id=account,
            first_seen=min((_utc(r["first_seen"]) for r in rows), default=None),
            last_seen=max((_utc(r["last_seen"]) for r in rows), default=None),
            calls=sum(b.calls for b in hourly), days=_days(hourly), hours=hourly, scores=scores.get(account, []),
            score_bucket_s=bucket_s, alerts=alerts.get(account, []), entities=entities.get(account, []),
            shared_templates=shared.get(account, []), models=models.get(account, []),
            harvest=_harvest(reader, account, hourly, start, first_alerts.get(account)),
            feedback=None if feedback is None else feedback.get(account, []), cluster_id=cluster_id,
        ))
    return pages


def _days(hours: Sequence[TrafficBucket]) -> list[TrafficBucket]:
    days: dict[datetime, list[int]] = {}
    for b in hours:
        day = b.start.replace(hour=0, minute=0, second=0, microsecond=0)
        acc = days.setdefault(day, [0, 0, 0, 0])
        for i, v in enumerate((b.calls, b.prompt_tokens, b.completion_tokens, b.reasoning_tokens)):
            acc[i] += v
    return [TrafficBucket(d, *v) for d, v in sorted(days.items())]


def _harvest(reader: _Reader, account: str, hours: Sequence[TrafficBucket], start: datetime,
             first_alert: datetime | None) -> Harvest:
    """Output received in the period; before the first alert: whole hours from the rollup plus the
    alert's own hour up to the alert from api_calls (a key range of at most one hour)."""
    completion = sum(b.completion_tokens for b in hours)
    reasoning = sum(b.reasoning_tokens for b in hours)
    if first_alert is None:
        return Harvest(completion, reasoning, None, completion, reasoning)
    if first_alert <= start:
        return Harvest(completion, reasoning, first_alert, 0, 0)
    whole = reader.rows(q.HARVEST_HOURS_BEFORE, account=account, since=_ts(start), until=_ts(first_alert))[0]
    part = reader.rows(q.HARVEST_PARTIAL_HOUR, account=account, since=_ts(start), until=_ts(first_alert))[0]
    return Harvest(completion, reasoning, first_alert,
                   int(whole["completion_tokens"] or 0) + int(part["completion_tokens"] or 0),
                   int(whole["reasoning_tokens"] or 0) + int(part["reasoning_tokens"] or 0))


def _campaign_harvest(reader: _Reader, pages: Sequence[AccountPage], start: datetime) -> Harvest:
    """Every member's output, and what all of them received before the campaign's first alert."""
    first = min((p.harvest.first_alert for p in pages if p.harvest.first_alert), default=None)
    completion = sum(p.harvest.completion_tokens for p in pages)
    reasoning = sum(p.harvest.reasoning_tokens for p in pages)
    if first is None:
        return Harvest(completion, reasoning, None, completion, reasoning)
    before = [_harvest(reader, p.account_id, p.hours, start, first) for p in pages]
    return Harvest(completion, reasoning, first, sum(h.completion_before_alert for h in before),
                   sum(h.reasoning_before_alert for h in before))


def _shared_templates(reader: _Reader, accounts: list[str], start: datetime,
                      config: LinkingConfig) -> dict[str, list[SharedTemplate]]:
    """Per account, its SimHashes that other accounts sent near-duplicates of (within max_hamming).

    Candidates share the SimHash's top 16 bits (the template rows, filtered by prefix); a
    near-duplicate that differs there is not found (linking checks all four bands).
    """
    mine = _templates(reader, accounts, start)
    prefixes = sorted({v[:4] for vs in mine.values() for v in vs})
    if not prefixes:
        return {}
    found = reader.rows(q.with_entity_table(q.TEMPLATE_NEIGHBOURS, reader.entity_table), prefixes=prefixes)
    by_prefix: dict[str, list[tuple[int, str, int]]] = defaultdict(list)
    for r in found:
        by_prefix[r["value"][:4]].append((int(r["value"], 16), r["account_id"], int(r["calls"])))
    out: dict[str, list[SharedTemplate]] = {}
    for account, templates in mine.items():
        rows = []
        for value, row in templates.items():
            h = int(value, 16)
            near = [(bin(h ^ o).count("1"), a, c) for o, a, c in by_prefix[value[:4]] if a != account]
            near = [n for n in near if n[0] <= config.template.max_hamming]
            if not near:
                continue
            others = sorted({a for _, a, _ in near})
            rows.append(SharedTemplate(value, int(row["calls"]), others[:MAX_LISTED], len(others),
                                       sum(c for _, _, c in near), min(d for d, _, _ in near),
                                       _utc(row["first_seen"]), _utc(row["last_seen"])))
        rows.sort(key=lambda s: (-s.other_account_count, -s.calls, s.simhash))
        out[account] = rows[:SHARED_TEMPLATES]
    return out


def _releases(reader: _Reader) -> dict[str, datetime]:
    return {r["model"]: _utc(r["first_minute"]) for r in reader.rows(q.MODEL_RELEASES)}


def _new_models(releases: dict[str, datetime], start: datetime) -> dict[str, datetime]:
    """Models first called (by anyone) after the dataset's first hour and inside the period."""
    if not releases:
        return {}
    origin = min(releases.values())
    return {m: t for m, t in releases.items() if t >= origin + NEW_MODEL_AFTER and t >= start}


def _models(reader: _Reader, accounts: list[str], start: datetime, releases: dict[str, datetime],
            new: dict[str, datetime]) -> dict[str, list[ModelUse]]:
    per_hour: dict[str, dict[str, dict[datetime, int]]] = defaultdict(lambda: defaultdict(dict))
    for r in reader.rows(q.MODEL_HOURLY, accounts=accounts, since=_ts(start)):
        per_hour[r["account_id"]][r["model"]][_utc(r["hour"])] = int(r["calls"])
    out: dict[str, list[ModelUse]] = {}
    for account, models in per_hour.items():
        total = sum(sum(h.values()) for h in models.values())
        uses = []
        for model, hours in models.items():
            calls = sum(hours.values())
            released = releases.get(model)
            since_release = 0.0
            if model in new:
                cut = new[model].replace(minute=0, second=0, microsecond=0)
                window = sum(c for h in models.values() for t, c in h.items() if t >= cut)
                since_release = calls / window if window else 0.0
            uses.append(ModelUse(model, calls, calls / total if total else 0.0, released, model in new,
                                 since_release))
        out[account] = sorted(uses, key=lambda u: -u.calls)
    return out


def _feedback(reader: _Reader, accounts: list[str]) -> dict[str, list[Feedback]] | None:
    if "alert_feedback" not in reader.tables:
        return None
    out: dict[str, list[Feedback]] = defaultdict(list)
    for r in reader.rows(q.FEEDBACK, accounts=accounts):
        out[r["account_id"]].append(Feedback(_utc(r["recorded_at"]), r["rule"], r["verdict"], r["reason"],
                                             r["analyst"], _utc(r["suppress_until"])))
    return out
