"""``distillwatch sql --format … --param …`` in this process, on the session's ClickHouse."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator

import pytest
from click.testing import CliRunner
from clickhouse_connect.driver.client import Client

from jobs.cli import main
from pipeline.settings import Settings

pytestmark = pytest.mark.clickhouse


@pytest.fixture
def env(ch_client: Client, ch_settings: Settings) -> Iterator[dict[str, str]]:
    before = ch_client.database  # the CLI's connect() sets the shared client's default database
    yield {"DW_CLICKHOUSE_DSN": ch_settings.effective_clickhouse_dsn, "DW_DATA_DIR": str(ch_settings.data_dir),
           "DW_CLICKHOUSE_DATABASE": ch_settings.clickhouse_database}
    ch_client.database = before


QUERY = "SELECT number AS n, toString(number * 10) AS label FROM numbers({count:UInt32}) WHERE label != {skip:String}"


def test_formats_and_params(env: dict[str, str]) -> None:
    runner = CliRunner()
    args = ["sql", QUERY, "--param", "count=4", "--param", "skip=20"]
    out = runner.invoke(main, [*args, "--format", "csv"], env=env)
    assert out.exit_code == 0, out.output
    assert list(csv.reader(io.StringIO(out.output))) == [["n", "label"], ["0", "0"], ["1", "10"], ["3", "30"]]
    out = runner.invoke(main, [*args, "--format", "table"], env=env)
    assert out.output.splitlines()[:3] == ["n  label", "-  -----", "0  0"]
    # Not a terminal: JSON lines by default, as before.
    out = runner.invoke(main, args, env=env)
    assert [json.loads(line)["n"] for line in out.output.splitlines()] == [0, 1, 3]


def test_injection_through_a_param_is_only_a_value(env: dict[str, str]) -> None:
    out = CliRunner().invoke(main, ["sql", QUERY, "--param", "count=4", "--param", "skip=' OR 1=1 --",
                                    "--format", "csv"], env=env)
    assert out.exit_code == 0, out.output
    assert len(out.output.splitlines()) == 5  # header + all four rows: the text was compared, not run


def test_bad_param_and_bad_sql_are_reported(env: dict[str, str]) -> None:
    out = CliRunner().invoke(main, ["sql", QUERY, "--param", "count"], env=env)
    assert out.exit_code == 2 and "name=value" in out.output
    out = CliRunner().invoke(main, ["sql", "SELECT nope FROM numbers(1)"], env=env)
    assert out.exit_code == 1 and "nope" in out.output
