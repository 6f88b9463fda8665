"""Analyst feedback on the evaluation's alerts: verdicts recorded in the replay's ClickHouse.

Read with ``distillwatch alerts list --since all --format json`` in a child process (the
evaluation process stays free of chDB, as for the replay), with the same counting an
operator gets from that command on any ClickHouse. The evaluation replays into a fresh
ClickHouse, so its counts are 0 unless verdicts were written there during the run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pipeline.alerting.feedback import CONFIRMED, FALSE_POSITIVE
from pipeline.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def count_verdicts(groups: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Alerted accounts whose newest verdict (over their alert groups) is a false positive / a confirmation."""
    newest: dict[str, tuple[str, str]] = {}  # account -> (recorded_at, verdict)
    for group in groups:
        fb = group.get("feedback")
        if fb and (fb["recorded_at"], fb["verdict"]) > newest.get(group["account_id"], ("", "")):
            newest[group["account_id"]] = (fb["recorded_at"], fb["verdict"])
    verdicts = [v for _, v in newest.values()]
    return {"alerted_accounts_false_positive": verdicts.count(FALSE_POSITIVE),
            "alerted_accounts_confirmed": verdicts.count(CONFIRMED)}


def feedback_counts(data_dir: Path, timeout_s: float = 300.0) -> dict[str, int]:
    """``count_verdicts`` over the alerts of the replay whose state is in ``data_dir``.

    Raises RuntimeError with the command's output when it fails.
    """
    # Where an embedded replay writes: chDB under its data dir, the default database (jobs/replay.py),
    # whatever DW_CLICKHOUSE_* says in this environment.
    env = {**os.environ, "DW_CLICKHOUSE_DSN": "",
           "DW_CLICKHOUSE_DATABASE": str(Settings.model_fields["clickhouse_database"].default)}
    done = subprocess.run([sys.executable, "-m", "jobs.cli", "alerts", "list", "--since", "all", "--format", "json",
                           "--data-dir", str(data_dir)], capture_output=True, text=True, timeout=timeout_s,
                          cwd=ROOT, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"reading analyst feedback failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return count_verdicts(json.loads(done.stdout or "[]"))
