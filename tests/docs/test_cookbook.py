"""Every ```sql block of docs/cookbook.md runs against a real demo run's tables and returns rows.

Parameters are filled the way an analyst would fill them with ``distillwatch sql
--param``, as strings: from the block's own ``-- params: name=value, …`` comment first (on
its first line: a block never starts with ``--``), then from values taken from the run (an
account that alerted and belongs to a campaign, that campaign, the run's time range). A
placeholder neither gives fails the test, naming it. The ``distillwatch sql`` command line
the cookbook shows is run through the real click command for one block per parameter set.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from clickhouse_connect.driver.client import Client

from jobs.cli import main
from jobs.ranking import TOP_ACCOUNTS, TOP_ACCOUNTS_ORDER
from pipeline.settings import Settings
from pipeline.sinks import clickhouse, formats
from pipeline.sinks.formats import QueryResult, run_query
from tests.support.demo_data import DemoData

COOKBOOK = Path(__file__).resolve().parents[2] / "docs" / "cookbook.md"
_BLOCK = re.compile(r"^```sql\n(.*?)^```", re.S | re.M)
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*):([^{}]+)\}")
_PARAMS_LINE = re.compile(r"--\s*params:(.*)$", re.M)  # a comment line or the end of one
_SH_BLOCK = re.compile(r"^```sh\n(.*?)^```", re.S | re.M)
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


def cookbook_command(text: str) -> list[str]:
    """The ``distillwatch sql`` command of the cookbook's ```sh block, split as a shell would, from ``sql`` on."""
    for match in _SH_BLOCK.finditer(text):
        words = shlex.split(match.group(1).replace("\\\n", " "))
        if words[:2] == ["distillwatch", "sql"]:
            return words[1:]
    raise AssertionError("docs/cookbook.md shows no `distillwatch sql` command in a ```sh block")


def with_params(command: list[str], params: dict[str, str]) -> list[str]:
    """``command`` with its ``--param`` pairs replaced by ``params``, where the first pair stood."""
    out: list[str] = []
    words = iter(command)
    for word in words:
        if word != "--param":
            out.append(word)
            continue
        next(words)
        if "--param" not in out:
            out += [item for name, value in params.items() for item in ("--param", f"{name}={value}")]
    return out


COOKBOOK_TEXT = COOKBOOK.read_text()
BLOCKS = cookbook_blocks(COOKBOOK_TEXT)
COMMAND = cookbook_command(COOKBOOK_TEXT)
# The first block of every distinct set of placeholders.
PER_PARAM_SET = sorted({frozenset(b.placeholders): b for b in reversed(BLOCKS)}.values(), key=lambda b: b.line)


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


def test_top_accounts_rank_as_the_report_and_the_overview_panel() -> None:
    # The cookbook writes the ranking out for analysts; jobs/ranking.py is what the report and Grafana use.
    (block,) = [b for b in BLOCKS if b.heading.lower().startswith("top accounts by score")]
    assert f"ORDER BY {TOP_ACCOUNTS_ORDER}\n    LIMIT {TOP_ACCOUNTS}\n" in block.sql, block.where
    assert block.sql.rstrip().endswith(f"ORDER BY {TOP_ACCOUNTS_ORDER}"), block.where


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


def test_no_block_starts_with_a_dash() -> None:
    """``distillwatch sql "$(cat query.sql)"`` with a leading ``--`` is read by click as an option."""
    for block in BLOCKS:
        assert not block.sql.lstrip().startswith("-"), f"{block.where}: starts with {block.sql.split()[0]!r}"


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[tuple[str, dict[str, str]]]:
    """The (SQL, parameters) each ``distillwatch sql`` run in this test asked for; nothing is opened."""
    calls: list[tuple[str, dict[str, str]]] = []

    def run(client: object, sql: str, parameters: dict[str, str] | None = None) -> QueryResult:
        calls.append((sql, dict(parameters or {})))
        return QueryResult(("n",), [(1,)])

    monkeypatch.setattr(formats, "run_query", run)
    monkeypatch.setattr(clickhouse, "connect", lambda settings: object())
    monkeypatch.chdir(tmp_path)  # query.sql and the command's --data-dir land here
    return calls


# How the cookbook tells the user to pass a saved query: its command line (``--file query.sql``),
# and the two forms its text names instead (the query as the argument, standard input).
_FORMS = {"--file query.sql": "as shown", '"$(cat query.sql)"': "argument", "- < query.sql": "stdin"}


@pytest.mark.parametrize("form", sorted(set(_FORMS.values())))
@pytest.mark.parametrize("block", PER_PARAM_SET, ids=[f"L{b.line}-{b.heading[:40]}" for b in PER_PARAM_SET])
def test_the_cookbook_command_line_reaches_the_query(
        block: Block, form: str, captured: list[tuple[str, dict[str, str]]]) -> None:
    for spelled in _FORMS:
        assert spelled in COOKBOOK_TEXT, f"docs/cookbook.md no longer shows {spelled}"
    assert COMMAND[-2:] == ["--file", "query.sql"], COMMAND
    example = dict(w.split("=", 1) for w in COMMAND[COMMAND.index("--param") + 1::2] if "=" in w)
    params = fill(block, {**example, "cluster": "cl-0001", "banned": example["account"],
                          "release": example["since"]})
    Path("query.sql").write_text(block.sql)
    args = with_params(COMMAND, params)
    stdin = None
    if form == "argument":  # "$(cat query.sql)": the shell drops the trailing newlines
        args[-2:] = [block.sql.rstrip("\n")]
    elif form == "stdin":
        args[-2:], stdin = ["-"], block.sql
    result = CliRunner().invoke(main, args, input=stdin)
    assert result.exit_code == 0, f"{block.where}, {form}: {result.output}"
    expected_sql = block.sql.rstrip("\n") if form == "argument" else block.sql
    assert captured == [(expected_sql, params)]
    assert result.output.splitlines()[-1] == "(1 row)"  # the command's --format table


def test_a_file_starting_with_a_comment_runs(captured: list[tuple[str, dict[str, str]]]) -> None:
    Path("q.sql").write_text("-- saved by an analyst\nSELECT {n:UInt8}\n")
    result = CliRunner().invoke(main, ["sql", "--file", "q.sql", "--param", "n=1"])
    assert result.exit_code == 0, result.output
    assert captured == [("-- saved by an analyst\nSELECT {n:UInt8}\n", {"n": "1"})]


@pytest.mark.parametrize(("args", "message"), [
    (["sql", "--param", "account=a-1", "--param", "account=a-2", "SELECT {account:String}"],
     "parameter 'account' given twice ('a-1' and 'a-2')"),
    (["sql"], "give the query once"),
    (["sql", "--file", "q.sql", "SELECT 1"], "give the query once"),
    (["sql", "  "], "the query is empty"),
])
def test_command_misuse_is_refused_with_a_clear_error(
        args: list[str], message: str, captured: list[tuple[str, dict[str, str]]]) -> None:
    Path("q.sql").write_text("SELECT 1\n")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and message in result.output, result.output
    assert captured == []


@pytest.mark.clickhouse
@pytest.mark.slow
@pytest.mark.parametrize("block", PER_PARAM_SET, ids=[f"L{b.line}-{b.heading[:40]}" for b in PER_PARAM_SET])
def test_one_block_per_parameter_set_returns_rows_through_the_command(
        block: Block, cookbook_db: tuple[Client, dict[str, str]], ch_settings: Settings,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real command on the demo run's tables, the query read with --file as the cookbook shows."""
    client, data = cookbook_db
    params = fill(block, data)
    monkeypatch.chdir(tmp_path)
    Path("query.sql").write_text(block.sql)
    env = {"DW_CLICKHOUSE_DSN": ch_settings.effective_clickhouse_dsn, "DW_DATA_DIR": str(ch_settings.data_dir),
           "DW_CLICKHOUSE_DATABASE": client.database}
    args = with_params(["sql", "--format", "json", "--param", "", "--file", "query.sql"], params)
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 0, f"{block.where}: {result.output}"
    assert result.output.strip(), f"{block.where}: no rows with {params}"
