"""`distillwatch demo` runs to the end on its own and ranks the attackers first."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.kafka, pytest.mark.clickhouse]

ROW = re.compile(r"^(org-\S+)\s+(\S+)\s+(yes|no)\s+([\d.]+)\s")


def test_demo_finishes_and_attackers_rank_above_benign(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "demo", "--duration", "15", "--speedup", "80",
         "--data-dir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=400, check=False, cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = [m.groups() for m in map(ROW.match, done.stdout.splitlines()) if m]
    assert len(rows) >= 10, done.stdout
    attack_flags = [r[2] == "yes" for r in rows]
    top = attack_flags[:8]
    assert all(top), f"benign account among the top 8:\n{done.stdout}"
    assert "where to look next" in done.stdout
    clusters = done.stdout.split("cross-account clusters", 1)[1].split("\n\n", 1)[0]
    assert "truth: hydra_fleet" in clusters, done.stdout  # the fleet is linked into a cluster
    assert (tmp_path / "demo" / "worker.log").exists()
