"""The command line: bad configuration fails at start, naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jobs.cli", *args], capture_output=True, text=True, timeout=60,
                          cwd=ROOT, env={**os.environ, **(env or {})}, check=False)


def test_worker_refuses_bad_configuration_naming_the_variable() -> None:
    done = run_cli("worker", env={"DW_PARTITIONS": "0"})
    assert done.returncode != 0
    assert "DW_PARTITIONS" in done.stderr and "Traceback" not in done.stderr


def test_worker_reports_unreachable_kafka_clearly() -> None:
    done = run_cli("worker", env={"DW_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    assert done.returncode != 0
    assert "DW_KAFKA_BOOTSTRAP" in done.stderr and "127.0.0.1:1" in done.stderr
    assert "Traceback" not in done.stderr


def test_replay_of_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    done = run_cli("replay", str(tmp_path / "nope.jsonl"), "--report", str(tmp_path / "r.json"))
    assert done.returncode != 0 and "nope.jsonl" in done.stderr


def test_help_lists_the_commands() -> None:
    done = run_cli("--help")
    assert done.returncode == 0
    for command in ("worker", "link", "demo", "replay", "eval", "loadgen", "sql", "migrate", "export-schema"):
        assert command in done.stdout
