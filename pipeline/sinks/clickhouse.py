"""ClickHouse sink: cached clients, migrated schema, typed errors, column-oriented inserts.

Errors are split by what the caller should do next:

* ``ClickHouseUnavailable`` (retryable): connection refused, timeouts, server
  overloaded or shutting down. Retry the same write with the same dedup token.
* ``ClickHouseRejected`` (not retryable): the data or statement is wrong.
  Retrying fails again; the batch needs attention.

Both subclass ``ClickHouseError`` and carry ``table`` (None outside a write).
"""

from __future__ import annotations

import re
import struct
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import clickhouse_connect
import numpy as np
from clickhouse_connect.datatypes.format import set_write_format
from clickhouse_connect.driver import exceptions as driver_errors
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.insert import InsertContext

from pipeline.settings import Settings
from pipeline.sinks.retention import apply_ttls
from schemas.migrate import apply_migrations
from schemas.tables import TableSpec, table_spec

# Server error codes that describe a passing condition rather than bad input.
_RETRYABLE_CODES = frozenset(
    {
        159,  # TIMEOUT_EXCEEDED
        202,  # TOO_MANY_SIMULTANEOUS_QUERIES
        203,  # NO_FREE_CONNECTION
        209,  # SOCKET_TIMEOUT
        210,  # NETWORK_ERROR
        236,  # ABORTED
        241,  # MEMORY_LIMIT_EXCEEDED
        242,  # TABLE_IS_READ_ONLY (replica lost its Keeper session)
        252,  # TOO_MANY_PARTS
        279,  # ALL_CONNECTION_TRIES_FAILED
        319,  # UNKNOWN_STATUS_OF_INSERT
        394,  # QUERY_WAS_CANCELLED (server shutting down)
        425,  # SYSTEM_ERROR
        439,  # CANNOT_SCHEDULE_TASK
        999,  # KEEPER_EXCEPTION
    }
)
# A proxy in front of ClickHouse answers 502/503/504 without a ClickHouse error code.
_RETRYABLE_HTTP = re.compile(r"HTTP status (429|5\d\d)\b")
# What a failed insert can raise: driver errors, plus whatever column serialisation
# throws for values that do not fit the column type (int('x'), struct range errors...).
_WRITE_ERRORS = (
    driver_errors.ClickHouseError,
    OSError,
    ValueError,
    TypeError,
    AttributeError,
    OverflowError,
    struct.error,
)
_SECRET_PARAMS = frozenset({"password", "access_token"})
# The rollups' materialized views deduplicate a retried block by themselves only with this
# setting: with 0 a retry the base table drops as a duplicate is aggregated again (measured on
# ClickHouse 26.9: a batch sent three times counted three times in traffic_1m); with 1 it
# counts once, and still reaches a view that missed it. 26.x defaults to 1; older servers or a
# user profile may not, so every insert sends it (tests/schemas/test_rollups.py).
_INSERT_SETTINGS = {"deduplicate_blocks_in_dependent_materialized_views": 1}
# Added for tables whose TableSpec.merge_on_insert is False (the per-batch tables): the block is
# written as sent, and the views' rollup blocks too, instead of being merged by key once more.
_NO_MERGE_ON_INSERT = {"optimize_on_insert": 0}


class ClickHouseError(Exception):
    """A ClickHouse operation failed; ``table`` names the table written, ``dsn`` is password-masked."""

    retryable = False

    def __init__(self, message: str, *, table: str | None = None, dsn: str | None = None) -> None:
        super().__init__(message)
        self.table = table
        self.dsn = dsn


class ClickHouseUnavailable(ClickHouseError):
    """ClickHouse could not be reached or is overloaded: retry the same operation later."""

    retryable = True


class ClickHouseRejected(ClickHouseError):
    """ClickHouse or the driver refused the data or statement: retrying fails again."""


def classify(exc: BaseException, table: str | None = None) -> ClickHouseError:
    """Wrap a driver or serialisation error as ClickHouseUnavailable or ClickHouseRejected."""
    where = f" on table {table}" if table else ""
    message = f"ClickHouse error{where}: {type(exc).__name__}: {exc}"
    if _is_transient(exc):
        return ClickHouseUnavailable(message, table=table)
    return ClickHouseRejected(message, table=table)


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, driver_errors.OperationalError | OSError):
        return True
    code = getattr(exc, "code", None)
    if code is None:
        return isinstance(exc, driver_errors.DatabaseError) and bool(_RETRYABLE_HTTP.search(str(exc)))
    return code in _RETRYABLE_CODES


# --- clients -----------------------------------------------------------------------

_clients: dict[str, Client] = {}
_read_only_clients: dict[str, Client] = {}
_clients_lock = threading.Lock()
# Session settings of the client that runs untrusted SQL (the worker's /query). readonly=1
# comes last: from then on ClickHouse refuses to change any setting of that session, these
# limits included, and refuses writes, DDL and the table functions that read outside
# ClickHouse (file, url, s3, remote, executable, ...). See pipeline/sinks/read_only.py.
# Rows past QUERY_ROW_LIMIT are cut ("break", not "throw": an error in the middle of a
# result leaves chDB's next answer on that handle garbled).
QUERY_ROW_LIMIT = 100_000
READ_ONLY_SETTINGS: dict[str, Any] = {
    "max_execution_time": 60,
    # Embedded chDB runs inside the worker: one heavy query must not take the worker's memory.
    "max_memory_usage": 1 << 30,
    # Refused at once when ClickHouse's estimate (after the primary key) is over, else as soon
    # as the reading passes it: a scan too big for the worker fails fast instead of taking 60 s.
    "max_rows_to_read": 1_000_000_000,
    "max_bytes_to_read": 32 << 30,
    "read_overflow_mode": "throw",
    "max_result_rows": QUERY_ROW_LIMIT + 1,  # one more: tells a cut result from an exact fit
    "result_overflow_mode": "break",
    "readonly": 1,
}
_formats_set = False


def connect(settings: Settings, *, apply_retention: bool = False) -> Client:
    """Client for ``settings.effective_clickhouse_dsn`` with the schema migrated to the latest version.

    One client per DSN per process is cached and returned on later calls (chDB
    allows a single data directory per process and per directory a single
    process). For an embedded ``chdb:///path`` DSN the directory is created.
    Migrations for ``settings.clickhouse_database`` run on every call (a no-op
    when up to date). With ``apply_retention`` (the worker and ``distillwatch
    migrate``: the owners of the data) the tables' TTLs are then brought to
    ``raw_ttl_days`` and ``rollup_ttl_days``, an ALTER only where one differs;
    other commands leave them, so an analyst's ``report`` run with the default
    settings never shortens the retention a worker set. Raises
    ClickHouseUnavailable, with the password masked, when the server or
    directory cannot be opened, ClickHouseRejected if a
    migration statement fails, and schemas.migrations.MigrationError if the
    database was migrated by newer code.
    """
    dsn = settings.effective_clickhouse_dsn
    _set_write_formats()
    with _clients_lock:
        client = _clients.get(dsn)
        if client is None:
            client = _open(dsn)
            _clients[dsn] = client
    try:
        apply_migrations(client, settings.clickhouse_database)
        if apply_retention:
            apply_ttls(client, settings.clickhouse_database,
                       raw_days=settings.raw_ttl_days, rollup_days=settings.rollup_ttl_days)
    except _WRITE_ERRORS as exc:
        error = classify(exc)
        error.dsn = mask_dsn(dsn)
        raise error from exc
    # Unqualified table names in ad-hoc queries and reports mean this database.
    client.database = settings.clickhouse_database
    return client


def connect_read_only(settings: Settings) -> Client:
    """A separate client whose ClickHouse session is read-only (READ_ONLY_SETTINGS), for untrusted SQL.

    Cached per DSN. It does not migrate: call ``connect`` first. For chDB it is a second
    handle on the directory ``connect`` opened (allowed in one process); its settings never
    touch the writer's session. Raises ClickHouseUnavailable like ``connect``.
    """
    dsn = settings.effective_clickhouse_dsn
    with _clients_lock:
        client = _read_only_clients.get(dsn)
        if client is None:
            client = _open(dsn, READ_ONLY_SETTINGS)
            _read_only_clients[dsn] = client
    client.database = settings.clickhouse_database
    return client


def close(dsn: str | None = None) -> None:
    """Close the cached client for ``dsn``, or every cached client when None (unknown DSN: no-op).

    Clients handed out before stop working. Closing a chDB client releases its
    directory, so this process may then open a different one.
    """
    with _clients_lock:
        for cache in (_read_only_clients, _clients):  # a chDB directory is released with its last handle
            doomed = list(cache) if dsn is None else [dsn] if dsn in cache else []
            for key in doomed:
                cache.pop(key).close()


def mask_dsn(dsn: str) -> str:
    """``dsn`` with the password (``user:pass@`` or ``?password=``) replaced by ``***``."""
    parts = urlsplit(dsn)
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:***@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, "***" if k.lower() in _SECRET_PARAMS else v) for k, v in pairs], safe="*")
    # Assembled by hand: urlunsplit turns "chdb:///path" into "chdb:/path".
    masked = f"{parts.scheme}://{netloc}{parts.path}"
    return masked + (f"?{query}" if query else "") + (f"#{parts.fragment}" if parts.fragment else "")


def _open(dsn: str, session_settings: Mapping[str, Any] | None = None) -> Client:
    masked = mask_dsn(dsn)
    path = _chdb_path(dsn)
    # In order: chDB applies them one SET at a time, HTTP sends them with every request.
    extra = dict(session_settings) if session_settings else None
    try:
        if path is not None:
            path.mkdir(parents=True, exist_ok=True)
            return clickhouse_connect.get_client(dsn=dsn, settings=extra)
        # The cached client is shared by threads; HTTP sessions would make concurrent
        # queries fail ("concurrent queries within the same session").
        return clickhouse_connect.get_client(dsn=dsn, autogenerate_session_id=False, settings=extra)
    except _WRITE_ERRORS as exc:
        detail = _hide_password(f"{type(exc).__name__}: {exc}", dsn)
        raise ClickHouseUnavailable(
            f"cannot connect to ClickHouse at {masked}: {_hint(detail)}{detail}", dsn=masked
        ) from None  # the driver's exception may repeat the DSN unmasked


def _chdb_path(dsn: str) -> Path | None:
    """Directory of a ``chdb:///abs/path`` DSN; None for servers and ``chdb://memory``."""
    if not dsn.startswith("chdb:"):
        return None
    parts = urlsplit(dsn)
    return Path(unquote(parts.path)) if not parts.netloc and parts.path else None


def _hint(detail: str) -> str:
    if "Cannot lock file" in detail:
        return "another process has this directory open (chDB: one process per data directory); "
    if "Error initializing EmbeddedServer" in detail:
        # chDB does not always say that the directory lock was the problem.
        return (
            "embedded ClickHouse could not start; most often another process has this directory open "
            "(chDB: one process per data directory); "
        )
    if "already initialized with path" in detail:
        return "this process already opened another embedded ClickHouse directory; close() it first; "
    return ""


def _hide_password(text: str, dsn: str) -> str:
    password = urlsplit(dsn).password
    if password:
        text = text.replace(password, "***").replace(unquote(password), "***")
    return text


def _set_write_formats() -> None:
    # Process-wide in clickhouse-connect: DateTime64 columns then take int epoch ms and
    # DateTime int epoch seconds (what numpy batches hold); datetime objects are refused.
    global _formats_set
    if not _formats_set:
        set_write_format("DateTime64*", "int")
        set_write_format("DateTime", "int")
        _formats_set = True


# --- writer ------------------------------------------------------------------------


@dataclass
class WriterStats:
    """Counters for one table: successful inserts and rows, failed inserts, last insert duration."""

    inserts: int = 0
    rows: int = 0
    errors: int = 0
    last_insert_s: float = 0.0


class ClickHouseWriter:
    """Column-oriented inserts into the tables of schemas.tables, reusing one InsertContext per table.

    Thread-safe: writes are serialised, since an InsertContext holds per-insert state.
    """

    def __init__(self, client: Client, database: str) -> None:
        self._client = client
        self._database = database
        self._contexts: dict[str, InsertContext] = {}
        self._stats: dict[str, WriterStats] = {}
        self._lock = threading.Lock()

    @property
    def stats(self) -> dict[str, WriterStats]:
        """Per-table counters, copied (safe to read while other threads write).

        Never waits for the lock: it is held for a whole insert (seconds while ClickHouse is
        slow or away) and /metrics reads this on the event loop. dict() copies atomically
        under the GIL; a copy may miss the insert finishing at that moment.
        """
        return {table: replace(s) for table, s in dict(self._stats).items()}

    def write(
        self, table: str, columns: Mapping[str, np.ndarray | Sequence[Any]], dedup_token: str | None = None
    ) -> int:
        """Insert one batch, given as column name -> values (numpy array or list); returns rows sent.

        ``columns`` must hold exactly the table's insert columns (schemas.tables),
        all of equal length; DateTime64 columns take int epoch ms, DateTime int
        epoch seconds. An empty batch writes nothing and returns 0. Writing the
        same batch again with the same ``dedup_token`` stores nothing new (the
        return value and stats still count it: ClickHouse does not report the
        skip). Without a token, a block identical to a recent one is skipped too
        (the tables' deduplication window hashes the data). The rollups filled
        from the table by materialized views are deduplicated the same way, so a
        retry never counts a batch twice in them either.
        Raises ValueError (unknown table, wrong column names, unequal lengths,
        not one-dimensional) before anything is sent, ClickHouseUnavailable
        when the write may succeed if retried, ClickHouseRejected otherwise.
        """
        spec = table_spec(table)
        data, rows = _ordered_columns(spec, columns)
        if rows == 0:
            return 0
        with self._lock:
            stats = self._stats.setdefault(table, WriterStats())
            started = time.perf_counter()
            try:
                self._insert(spec, data, dedup_token)
            except _WRITE_ERRORS as exc:
                stats.errors += 1
                # The table may have been recreated since the context described it.
                self._contexts.pop(table, None)
                raise classify(exc, table) from exc
            stats.inserts += 1
            stats.rows += rows
            stats.last_insert_s = time.perf_counter() - started
        return rows

    def _insert(
        self, spec: TableSpec, data: list[np.ndarray | Sequence[Any]], dedup_token: str | None
    ) -> None:
        context = self._contexts.get(spec.name)
        if context is None:
            context = self._client.create_insert_context(
                spec.name, column_names=list(spec.column_names), database=self._database, column_oriented=True
            )
            self._contexts[spec.name] = context
        context.data = data
        context.settings = insert_settings(spec, dedup_token)
        try:
            self._client.insert(context=context)
        finally:
            context.data = None  # don't keep the batch alive until the next write


def insert_settings(spec: TableSpec, dedup_token: str | None) -> dict[str, Any]:
    """The settings of one insert into ``spec``'s table: built anew for every call, since a token left
    from the previous batch would make this one a "duplicate"."""
    settings: dict[str, Any] = dict(_INSERT_SETTINGS)
    if not spec.merge_on_insert:
        settings.update(_NO_MERGE_ON_INSERT)
    if dedup_token:
        settings["insert_deduplication_token"] = dedup_token
    return settings


def _ordered_columns(
    spec: TableSpec, columns: Mapping[str, np.ndarray | Sequence[Any]]
) -> tuple[list[np.ndarray | Sequence[Any]], int]:
    """Columns in the table's order and the row count; raises ValueError naming what is wrong."""
    missing = [name for name in spec.column_names if name not in columns]
    unexpected = sorted(name for name in columns if name not in spec.column_names)
    if missing or unexpected:
        raise ValueError(f"{spec.name}: missing columns {missing}, unexpected columns {unexpected}")
    data = [columns[name] for name in spec.column_names]
    lengths = {}
    for name, values in zip(spec.column_names, data, strict=True):
        # A str is a Sequence too, but never a column.
        if isinstance(values, str | bytes) or (isinstance(values, np.ndarray) and values.ndim != 1):
            raise ValueError(f"{spec.name}.{name}: expected a 1-D array or a list of values")
        lengths[name] = len(values)
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{spec.name}: columns differ in length: {lengths}")
    return data, next(iter(lengths.values()))


def query_rows(client: Client, sql: str, parameters: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Run a SELECT and return its rows as dicts (column name -> value), for reports.

    ``parameters`` binds ``{name:Type}`` placeholders server-side. Raises
    ClickHouseUnavailable or ClickHouseRejected like ``ClickHouseWriter.write``.
    """
    try:
        return list(client.query(sql, parameters=dict(parameters) if parameters else None).named_results())
    except _WRITE_ERRORS as exc:
        raise classify(exc) from exc
