"""The command line: bad configuration fails at start, naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from jobs.cli import OPTIONAL_PACKAGES

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


# A worker-only install (no extras): the optional packages cannot be imported.
_WITHOUT_EXTRAS = f"""
import sys
for name in {sorted(OPTIONAL_PACKAGES)!r}:
    sys.modules[name] = None  # importing it raises ModuleNotFoundError, as when it is not installed
from jobs.cli import main
main()
"""


def run_without_extras(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _WITHOUT_EXTRAS, *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env={**os.environ, **(env or {})}, check=False)


def test_the_worker_runs_without_the_extras() -> None:
    done = run_without_extras("worker", env={"DW_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    assert done.returncode != 0 and "127.0.0.1:1" in done.stderr  # got as far as connecting to Kafka
    assert "ModuleNotFoundError" not in done.stderr and "Traceback" not in done.stderr


def test_a_command_needing_an_extra_names_it_and_help_still_lists_it() -> None:
    listed = run_without_extras("--help")
    assert listed.returncode == 0, listed.stderr
    assert "report" in listed.stdout and "grafana" in listed.stdout
    for args, extra in ((["report", "--since", "1d"], "analyst"), (["grafana", "build"], "grafana")):
        done = run_without_extras(*args)
        assert done.returncode == 1, (args, done.stderr)
        assert f"distillwatch[{extra}]" in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)
