"""The linking child runs no Numba kernel and writes no ClickHouse table: it must not load either.

Numba with LLVM and ClickHouse's client were about 75 MB of its resident memory, counted in every
replay's peak (docs/benchmarks.md, "Replay"). Checked in a fresh interpreter: this one has them loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = ("numba", "llvmlite", "clickhouse_connect", "chdb")

# What the child does before its first message: import its module, load the scoring and alert setup.
_START = f"""
import json, sys
from pipeline.linking.process import AlertSetup
from pipeline.scoring import load_scoring_config
from pipeline.settings import load_settings
settings = load_settings()
AlertSetup.from_settings(settings, load_scoring_config(settings.scoring_config))
print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))
"""


def test_the_linking_child_starts_without_numba_or_clickhouse() -> None:
    done = subprocess.run([sys.executable, "-c", _START], capture_output=True, text=True, check=False, timeout=120,
                          cwd=Path(__file__).resolve().parents[3])
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.splitlines()[-1]) == []

