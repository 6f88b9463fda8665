"""Run ``distillwatch replay`` in a child process, the way a user would, and relay its progress.

A child, not an import: chDB lets one process open a data directory, and the replay
opens its own; the evaluation process stays free of chDB state. The replay runs in
a process group of its own (with its worker): when the evaluation is interrupted
(Ctrl-C, SIGTERM) the group gets SIGINT, which lets the replay stop its broker, and
whatever is left of the group afterwards is killed, so no worker outlives the run.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from jobs.eval.table import duration

ROOT = Path(__file__).resolve().parents[2]
_STOP_GRACE_S = 20.0
# Markers in jobs/replay.py's lines: the worker starts first and reads while the file is produced.
_PHASES = (("replay: producing ", "producing events to the broker while the worker reads"),
           ("lines produced; the worker reads", "the worker reading to the end of input"))


class ReplayFailed(RuntimeError):
    pass


def replay_command(events_path: Path, report_path: Path, data_dir: Path | None) -> list[str]:
    args = [sys.executable, "-m", "jobs.cli", "replay", str(events_path), "--report", str(report_path)]
    if data_dir is not None:
        args += ["--data-dir", str(data_dir)]
    return args


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line.rstrip("\n"))
    lines.put(None)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        _signal_group(proc.pid, signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=_STOP_GRACE_S)
    _signal_group(proc.pid, signal.SIGKILL)  # the group outlives its leader while a worker is in it
    proc.wait(timeout=10)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C (so the child group is stopped) instead of ending us on the spot."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _relay(proc: subprocess.Popen[str], log: Callable[[str], None], heartbeat_s: float) -> tuple[int, list[str]]:
    """Pass the child's lines on; while it is quiet, say which phase it is in and for how long."""
    assert proc.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
    tail: deque[str] = deque(maxlen=40)
    phase, phase_started = "starting", time.monotonic()
    while True:
        try:
            line = lines.get(timeout=heartbeat_s)
        except queue.Empty:
            log(f"replay: {phase} ({duration(time.monotonic() - phase_started)} in this phase)")
            continue
        if line is None:
            return proc.wait(), list(tail)
        tail.append(line)
        for marker, name in _PHASES:
            if marker in line and name != phase:
                phase, phase_started = name, time.monotonic()
        log(line)


def run_replay_child(
    events_path: Path,
    report_path: Path,
    *,
    data_dir: Path | None = None,
    log: Callable[[str], None] = print,
    heartbeat_s: float = 30.0,
) -> None:
    """Run the replay to completion, relaying its lines; a heartbeat while it is quiet."""
    report_path.unlink(missing_ok=True)  # never read a previous run's report
    with _sigterm_as_interrupt():
        proc = subprocess.Popen(
            replay_command(events_path, report_path, data_dir), cwd=ROOT, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True,
        )
        try:
            code, tail = _relay(proc, log, heartbeat_s)
        finally:
            _stop(proc)
    if code != 0:
        raise ReplayFailed(f"distillwatch replay exited with status {code}:\n" + "\n".join(tail))
    if not report_path.is_file():
        raise ReplayFailed(f"distillwatch replay succeeded but wrote no report at {report_path}")
