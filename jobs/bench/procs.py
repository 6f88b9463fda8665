"""Process measurements for the bench: CPU seconds and resident memory, from /proc (Linux)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (every thread); 0.0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


def self_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_bytes() -> int:
    """Resident set size of this process now."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def peak_rss_bytes() -> int:
    """This process's resident high-water mark (VmHWM)."""
    return _status_kb(os.getpid(), "VmHWM:") * 1024


def load_average() -> float:
    return os.getloadavg()[0]


def _status_kb(pid: int, field: str) -> int:
    """A ``kB`` field of /proc/<pid>/status (VmRSS, VmHWM); 0 once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def with_descendants(pids: Iterable[int]) -> list[int]:
    """``pids`` and every process below them (a worker's linking child, its broker), from /proc."""
    found: list[int] = []
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid in found:
            continue
        found.append(pid)
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    todo += [int(c) for c in f.read().split()]
            except OSError:
                pass
    return found


class PeakRss:
    """The highest resident memory of some processes together, sampled by a thread while they run.
    ``trees`` count with their descendants (a worker with its linking child: part of what a run costs).

    Each sample adds the processes' current RSS; a process's own high-water mark (VmHWM, kept by
    the kernel, so no peak between two samples is missed) bounds it from below.
    """

    def __init__(self, pids: Iterable[int], interval_s: float = 0.1, trees: Iterable[int] = ()) -> None:
        self.pids = list(pids)
        self.trees = list(trees)
        self.interval_s = interval_s
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-rss", daemon=True)

    def sample(self) -> None:
        pids = [*self.pids, *with_descendants(self.trees)]
        together = sum(_status_kb(p, "VmRSS:") for p in pids)
        single = max((_status_kb(p, "VmHWM:") for p in pids), default=0)
        self.peak_bytes = max(self.peak_bytes, together * 1024, single * 1024)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def __enter__(self) -> PeakRss:
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_json_child(module: str, args: Iterable[object], timeout_s: float, what: str) -> Any:
    """``python -m module args…`` in a fresh process; its last stdout line, parsed as JSON.

    Raises RuntimeError with the child's stderr tail when it fails.
    """
    done = subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout_s, cwd=Path(__file__).resolve().parents[2], check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
