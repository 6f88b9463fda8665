"""A stand-in for the linking child process (a small script), supervised like the real one."""

from __future__ import annotations

import sys
from pathlib import Path

from pipeline.linking.supervisor import LinkingSupervisor

# argv: DIR MODE. Each run appends "start" to DIR/log. MODE fail-once: the first run exits 1,
# later runs write DIR/ready and wait for SIGTERM (then exit 0). exit0 / exit3: exit at once.
# stubborn: ignores SIGTERM, writes DIR/ready and waits.
CHILD = """
import os, signal, sys, time
from pathlib import Path
d, mode = Path(sys.argv[1]), sys.argv[2]
with open(d / "log", "a") as f:
    f.write("start\\n")
(d / "token").write_text(os.environ.get("DW_WEB_TOKEN", "-") + "|" + " ".join(sys.argv))
if mode == "exit0":
    sys.exit(0)
if mode == "exit3":
    sys.exit(3)
if mode == "fail-once" and not (d / "failed").exists():
    (d / "failed").touch()
    sys.exit(1)
def stop(*_):
    (d / "stopped").touch()
    sys.exit(0)
signal.signal(signal.SIGTERM, signal.SIG_IGN if mode == "stubborn" else stop)
(d / "ready").touch()
while True:
    time.sleep(0.1)
"""
WAIT_S = 60.0


def supervisor(tmp_path: Path, mode: str, *, bounded: bool = False, **kw: float | int) -> LinkingSupervisor:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return LinkingSupervisor([sys.executable, str(script), str(tmp_path), mode], {"DW_WEB_TOKEN": "tok-secret"},
                             bounded=bounded, backoff_start_s=0.05, **kw)  # type: ignore[arg-type]
