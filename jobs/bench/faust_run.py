"""Run the ``faust_naive`` app (``jobs.bench.faust_naive``) in a child process for a fixed window."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from jobs.bench.procs import cpu_seconds

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class FaustRate:
    events: int
    seconds: float
    cpu_seconds: float  # the Faust process and the broker over the window


class _Progress:
    """Reads the child's progress lines: (wall clock, events handled, CPU of child + broker)."""

    def __init__(self, proc: subprocess.Popen[str], log_path: Path, pids: list[int]) -> None:
        self.samples: list[tuple[float, int, float]] = []
        self.lock = threading.Lock()
        self.pids = pids
        self._thread = threading.Thread(target=self._read, args=(proc, log_path), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen[str], log_path: Path) -> None:
        assert proc.stdout is not None
        with open(log_path, "a") as log:
            for line in proc.stdout:
                at = line.find('{"t"')  # Faust routes stdout through its logger: find the JSON in the line
                if at < 0:
                    log.write(line)
                    continue
                sample = json.loads(line[at:])
                cpu = sum(cpu_seconds(p) for p in self.pids)
                with self.lock:
                    self.samples.append((float(sample["t"]), int(sample["n"]), cpu))

    def started(self) -> tuple[float, int, float] | None:
        with self.lock:
            return next((s for s in self.samples if s[1] > 0), None)

    def last(self) -> tuple[float, int, float]:
        """The first sample with the highest count (so a finished topic adds no idle time)."""
        with self.lock:
            top = self.samples[-1][1]
            return next(s for s in self.samples if s[1] == top)


def measure_faust_naive(bootstrap: str, topic: str, partitions: int, broker_pid: int, work_dir: Path, *,
                        budget_s: float, start_timeout_s: float = 120.0) -> FaustRate:
    """Events/s of the naive agent over ``budget_s`` seconds after it handled its first event."""
    work_dir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-m", "jobs.bench.faust_naive", bootstrap, topic, str(partitions),
                             str(work_dir / "faust")], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    progress = _Progress(proc, work_dir / "faust.log", [proc.pid, broker_pid])
    try:
        deadline = time.monotonic() + start_timeout_s
        while (first := progress.started()) is None:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"faust_naive handled no event (see {work_dir / 'faust.log'})")
            time.sleep(0.1)
        time.sleep(budget_s)
        last = progress.last()
        if last[1] <= first[1]:
            raise RuntimeError(f"faust_naive made no progress in {budget_s:.0f}s (see {work_dir / 'faust.log'})")
        return FaustRate(last[1] - first[1], last[0] - first[0], last[2] - first[2])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
