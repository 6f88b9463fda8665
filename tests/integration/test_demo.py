"""`distillwatch demo` runs to the end on its own and ranks the attackers first."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from jobs.loadgen.malformed import malformed_messages
from pipeline.settings import load_settings
from tests.support.demo_data import DemoData, DemoRun

pytestmark = [pytest.mark.slow, pytest.mark.kafka, pytest.mark.clickhouse]

ROW = re.compile(r"^(org-\S+)\s+(\S+)\s+(yes|no)\s+([\d.]+)\s")


def test_demo_finishes_and_attackers_rank_above_benign(demo_run: DemoRun) -> None:
    # The session's one demo run (tests/conftest.py), also the data of the dashboard and cookbook tests.
    assert demo_run.returncode == 0, demo_run.stdout[-3000:] + demo_run.stderr[-3000:]
    rows = [m.groups() for m in map(ROW.match, demo_run.stdout.splitlines()) if m]
    assert len(rows) >= 10, demo_run.stdout
    attack_flags = [r[2] == "yes" for r in rows]
    top = attack_flags[:8]
    assert all(top), f"benign account among the top 8:\n{demo_run.stdout}"
    assert "where to look next" in demo_run.stdout
    clusters = demo_run.stdout.split("cross-account clusters", 1)[1].split("\n\n", 1)[0]
    assert "truth: hydra_fleet" in clusters, demo_run.stdout  # the fleet is linked into a cluster
    assert (demo_run.data_dir / "worker.log").exists()
    assert set(demo_run.labels) >= {r[0] for r in rows}  # the ground truth is kept beside the data


def test_demo_dead_letters_every_malformed_message(demo_db: DemoData) -> None:
    rows = demo_db.client.query(f"SELECT reason, count() FROM `{demo_db.database}`.rejected_events GROUP BY reason")
    got = dict(rows.result_rows)
    expected = Counter(reason for reason, _ in malformed_messages(load_settings()))
    assert got == dict(expected)
    assert "6 messages dead-lettered" in demo_db.run.stdout


def test_demo_data_loads_with_rollups(demo_db: DemoData) -> None:
    db, client = demo_db.database, demo_db.client
    counts = {t: client.command(f"SELECT count() FROM `{db}`.`{t}`") for t in ("api_calls", "signatures_1m", "alerts")}
    assert all(n > 0 for n in counts.values()), counts
    assert demo_db.attackers() and demo_db.benign()
