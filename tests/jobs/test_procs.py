"""PeakRss: the highest resident memory of running processes, sampled."""

from __future__ import annotations

import mmap
import subprocess
import sys
import time

import numpy as np

from jobs.bench.procs import PeakRss, peak_rss_bytes, rss_bytes

# Holds 200 MB for a moment, then frees it and lingers: the peak must be seen, not the end state.
_SPIKE = "import time; b = bytearray(200 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(0.5); " \
         "del b; time.sleep(1.5)"


def test_peak_rss_sees_a_spike_that_is_gone_by_the_end() -> None:
    proc = subprocess.Popen([sys.executable, "-c", _SPIKE])
    with PeakRss([proc.pid], interval_s=0.05) as rss:
        proc.wait(timeout=60)
        time.sleep(0.1)
    assert rss.peak_bytes >= 200 * 2**20


def test_peak_rss_of_no_process_is_zero() -> None:
    with PeakRss([]) as rss:
        pass
    assert rss.peak_bytes == 0


def test_a_tree_counts_its_childrens_memory_too() -> None:
    """A worker's linking child is part of what a run costs: a tree's descendants are sampled."""
    spawn_child = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {_SPIKE!r}])"
    proc = subprocess.Popen([sys.executable, "-c", spawn_child])
    with PeakRss([], interval_s=0.05, trees=[proc.pid]) as rss, PeakRss([proc.pid], interval_s=0.05) as alone:
        proc.wait(timeout=60)
    assert rss.peak_bytes >= 200 * 2**20
    assert alone.peak_bytes < 100 * 2**20  # the parent alone holds no such buffer


def test_own_peak_keeps_a_spike_this_process_has_freed() -> None:
    """The bench reports its own high-water mark: what its input cost stays visible after it is freed."""
    before = peak_rss_bytes()
    # An anonymous mapping of its own, given back by munmap: where malloc puts a block and how it frees it
    # depend on the allocator's state in a long test process (with a bytearray the peak once did not move
    # late in a full CI run; not reproduced alone).
    with mmap.mmap(-1, max(0, before - rss_bytes()) + 300 * 2**20) as spike:
        pages = np.frombuffer(spike, dtype=np.uint8)
        pages[::mmap.PAGESIZE] = 1  # touch every page
        del pages
    assert peak_rss_bytes() >= before + 250 * 2**20 > rss_bytes()
