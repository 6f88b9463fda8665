"""Every ```sql block of docs/cookbook.md runs against a real demo run's tables and returns rows.

Parameters are filled the way an analyst would fill them with ``distillwatch sql
--param``, as strings: from the block's own ``-- params: name=value, …`` line first, then
from values taken from the run (an account that alerted and belongs to a campaign, that
campaign, the run's time range). A placeholder neither gives fails the test, naming it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from clickhouse_connect.driver.client import Client

from pipeline.sinks.formats import run_query
from tests.support.demo_data import DemoData

COOKBOOK = Path(__file__).resolve().parents[2] / "docs" / "cookbook.md"
_BLOCK = re.compile(r"^```sql\n(.*?)^```", re.S | re.M)
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*):([^{}]+)\}")
_PARAMS_LINE = re.compile(r"^\s*--\s*params:(.*)$", re.M)
_HEADING = re.compile(r"^#{2,4} +(.+?)\s*$", re.M)
_TIME = "%Y-%m-%d %H:%M:%S"


@dataclass(frozen=True)
class Block:
    heading: str  # the nearest heading above the block
    sql: str
    line: int  # 1-based line of the opening fence

    @property
    def placeholders(self) -> dict[str, str]:
        """{name: ClickHouse type} of every ``{name:Type}`` in the block."""
        return {m.group(1): m.group(2).strip() for m in _PLACEHOLDER.finditer(self.sql)}

    @property
    def examples(self) -> dict[str, str]:
        """The block's ``-- params: a=1, b=x`` values; raises ValueError naming a malformed entry."""
        values: dict[str, str] = {}
        for line in _PARAMS_LINE.findall(self.sql):
            for item in filter(None, (part.strip() for part in line.split(","))):
                name, sep, value = item.partition("=")
                if not sep or not name.strip():
                    raise ValueError(f"{self.where}: bad '-- params:' entry {item!r}, expected name=value")
                values[name.strip()] = value.strip()
        return values

    @property
    def where(self) -> str:
        return f"docs/cookbook.md line {self.line} ({self.heading})"


def cookbook_blocks(text: str) -> list[Block]:
    blocks = []
    for match in _BLOCK.finditer(text):
        headings = _HEADING.findall(text, 0, match.start())
        line = text.count("\n", 0, match.start()) + 1
        blocks.append(Block(headings[-1] if headings else "(no heading)", match.group(1), line))
    return blocks


def fill(block: Block, data: dict[str, str]) -> dict[str, str]:
    """Values for every placeholder of ``block``; raises LookupError naming those it cannot fill."""
    examples = block.examples
    missing = sorted(name for name in block.placeholders if name not in examples and name not in data)
    if missing:
        raise LookupError(f"{block.where}: no value for parameter(s) {', '.join(missing)}; give one in a "
                          "'-- params:' line or add it to the data defaults in tests/docs/test_cookbook.py")
    return {name: examples.get(name, data.get(name, "")) for name in block.placeholders}


def data_params(client: Client, database: str) -> dict[str, str]:
    """Parameter values chosen from the run in ``database``, as ``--param`` strings."""
    db = f"`{database}`"
    alerted = {r[0]: r[1] for r in client.query(
        f"SELECT account_id, max(score) FROM {db}.alerts FINAL GROUP BY account_id").result_rows}
    assert alerted, "the demo run has no alerts: the cookbook cannot be checked on it"
    clusters = client.query(f"SELECT cluster_id, account_ids FROM {db}.clusters FINAL WHERE active = 1 "
                            "ORDER BY score DESC, cluster_id").result_rows
    # An alerted account inside the strongest campaign that has one, so campaign queries find it too.
    linked = [(cid, max((a for a in members if a in alerted), key=alerted.__getitem__))
              for cid, members in clusters if any(a in alerted for a in members)]
    assert linked, "no active cluster holds an alerted account in the demo run"
    cluster, account = linked[0]
    first, last = client.query(f"SELECT min(window_start), max(window_start) FROM {db}.signatures_1m").result_rows[0]
    since, until = first, last + timedelta(minutes=1)
    return {
        "account": account,
        "banned": account,
        "cluster": cluster,
        "since": since.strftime(_TIME),
        "until": until.strftime(_TIME),
        "release": since.strftime(_TIME),  # the run's models all "launch" at its start
    }


BLOCKS = cookbook_blocks(COOKBOOK.read_text())


@pytest.fixture(scope="module")
def cookbook_db(demo_db: DemoData) -> Iterator[tuple[Client, dict[str, str]]]:
    """The session client pointed at the demo database (the cookbook's SQL is unqualified), and the data values."""
    client = demo_db.client
    saved = client.database
    client.database = demo_db.database
    try:
        yield client, data_params(client, demo_db.database)
    finally:
        client.database = saved


def test_cookbook_covers_the_analysts_questions() -> None:
    headings = " | ".join(b.heading.lower() for b in BLOCKS)
    for topic in ("top accounts by score", "payment fingerprint", "campaign members", "harvested per campaign",
                  "resemble a banned", "new model", "rejected input", "alert history", "time to detect",
                  "threshold change"):
        assert topic in headings, f"docs/cookbook.md has no query on {topic!r}"
    assert len({b.heading for b in BLOCKS}) >= len(BLOCKS) - 1, "two blocks share a heading"


@pytest.mark.parametrize("block", BLOCKS, ids=[f"L{b.line}-{b.heading[:40]}" for b in BLOCKS])
def test_block_parameters_are_well_formed(block: Block) -> None:
    unused = set(block.examples) - set(block.placeholders)
    assert not unused, f"{block.where}: '-- params:' names {sorted(unused)} that the query does not use"
    assert not re.search(r"\{[A-Za-z_]\w*\}", block.sql), f"{block.where}: a placeholder without a type"


def test_fill_names_a_parameter_it_cannot_fill() -> None:
    block = Block("probe", "-- params: limit=5\nSELECT {account:String}, {limit:UInt32}, {mystery:String}\n", 1)
    assert fill(Block("ok", "-- params: limit=5\nSELECT {limit:UInt32}, {account:String}\n", 1),
                {"account": "a"}) == {"limit": "5", "account": "a"}
    with pytest.raises(LookupError, match="mystery"):
        fill(block, {"account": "a"})


@pytest.mark.clickhouse
@pytest.mark.slow
@pytest.mark.parametrize("block", BLOCKS, ids=[f"L{b.line}-{b.heading[:40]}" for b in BLOCKS])
def test_block_returns_rows_on_a_demo_run(block: Block, cookbook_db: tuple[Client, dict[str, str]]) -> None:
    client, data = cookbook_db
    try:
        params = fill(block, data)
    except LookupError as exc:
        pytest.fail(str(exc))
    result = run_query(client, block.sql, params)
    assert result.rows, f"{block.where}: no rows with {params}"
