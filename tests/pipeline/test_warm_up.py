"""The worker's warm-up compiles (or loads) the kernels a real batch needs, before any traffic."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# In a fresh process: in this one, earlier tests may have compiled the kernels already.
_CHECK = """
from pipeline.kernels import frames, json_scan
from pipeline.warm_up import warm_up_kernels
assert not frames.ingest_events.signatures
warm_up_kernels()
# A kernel with no compiled signature would compile inside the first real batch.
missing = [k.__name__ for k in (json_scan.scan_events, frames.ingest_events, frames.collect_closed_frames)
           if not k.signatures]
assert not missing, missing
"""


def test_warm_up_leaves_the_decoder_and_frame_kernels_compiled() -> None:
    done = subprocess.run([sys.executable, "-c", _CHECK], capture_output=True, text=True, timeout=600,
                          check=False, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-2000:]
