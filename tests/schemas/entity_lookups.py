""""Which accounts share this value" against account_entities_1h: the rows, the queries, the granules read."""

from __future__ import annotations

from clickhouse_connect.driver.client import Client

from pipeline.sinks.clickhouse import ClickHouseWriter
from tests.support import rollup_rows
from tests.support.rollups import rows


def write_shared_card(client: Client, writer: ClickHouseWriter, db: str, token: str = "many") -> set[str]:
    """30,000 calls of 3,000 accounts, three of which share one card, merged into one part; the three."""
    batch = rollup_rows.api_calls(30_000, seed=13, accounts=3000)  # several granules of rollup rows
    fleet = {f"acct-{a}" for a in (7, 1234, 2999)}
    batch["payment_fingerprint"] = ["fp-shared" if a in fleet else f"fp-{a}" for a in batch["account_id"]]
    writer.write("api_calls", batch, dedup_token=token)
    client.command(f"OPTIMIZE TABLE {db}.account_entities_1h FINAL")
    return fleet & set(batch["account_id"])


def value_lookups(db: str) -> list[str]:
    """The lookup as the investigate page (a value) and the account dashboard (the account's values) ask it."""
    return [
        f"SELECT account_id, calls FROM {db}.account_entities_1h WHERE kind = 'payment' AND value = 'fp-shared'",
        f"SELECT account_id, calls FROM {db}.account_entities_1h WHERE kind = 'payment' "
        f"AND (kind, value) IN (SELECT kind, value FROM {db}.account_entities_1h "
        f"WHERE account_id = 'acct-7' AND kind = 'payment')",
    ]


def granules_after_index(client: Client, sql: str, index: str) -> tuple[int, int]:
    """(selected, total) granules of ``sql`` after the skip index ``index`` (``EXPLAIN indexes = 1``);
    ValueError if the plan does not use it."""
    plan = [r[0].strip() for r in rows(client, f"EXPLAIN indexes = 1 {sql}")]
    at = plan.index(f"Name: {index}")
    selected, total = next(line for line in plan[at:] if line.startswith("Granules:")).split()[1].split("/")
    return int(selected), int(total)
