"""Free space for an evaluation, checked before its first event is written.

A generalisation check writes one EVENTS.jsonl per run (2.3 GB at the default size) and, with
``--keep-state``, keeps each replay's ClickHouse: six runs need about 24 GB, and a disk that
fills 15 minutes in stops the replay's inserts (ClickHouse NOT_ENOUGH_SPACE) and loses the run.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from shutil import disk_usage

from jobs.eval.scenario import OptionsError

# Measured on the default scenario (2026-12-06): 700 bytes of EVENTS.jsonl per event (3.24M events,
# 2.27 GB), and a replay's embedded ClickHouse 257 bytes per event once merged, counted twice for
# the parts a running replay has not merged yet.
EVENTS_FILE_BYTES_PER_EVENT = 700
STATE_BYTES_PER_EVENT = 520
GB = 1e9


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing parent: the filesystem ``path`` will be on."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_free_space(runs: Sequence[tuple[Path, int]], *, keep_state: bool, scratch: Path) -> None:
    """Raise OptionsError when the runs' files will not fit: ``runs`` is (out_dir, events) per run.

    The events files and kept states go under each run's out_dir; an unkept state goes to ``scratch``
    (the temporary directory), one run's at a time. An EVENTS.jsonl already in a run's out_dir is
    overwritten, so its size counts as free.
    """
    need: Counter[int] = Counter()  # st_dev -> bytes
    reclaimable: Counter[int] = Counter()
    where: dict[int, Path] = {}

    def add(path: Path, nbytes: int) -> None:
        existing = _existing(path)
        dev = os.stat(existing).st_dev
        need[dev] += nbytes
        where.setdefault(dev, existing)

    for out_dir, events in runs:
        add(out_dir, events * EVENTS_FILE_BYTES_PER_EVENT + (events * STATE_BYTES_PER_EVENT if keep_state else 0))
        old = out_dir / "EVENTS.jsonl"
        if old.is_file():
            st = old.stat()
            reclaimable[st.st_dev] += st.st_size
    if not keep_state:
        add(scratch, max((events for _, events in runs), default=0) * STATE_BYTES_PER_EVENT)
    for dev, nbytes in need.items():
        free = disk_usage(where[dev]).free + reclaimable[dev]
        if nbytes > free:
            total = sum(events for _, events in runs)
            raise OptionsError(
                f"{where[dev]}: not enough free space for this evaluation: about {nbytes / GB:.1f} GB needed "
                f"({len(runs)} run(s), {total:,} events: EVENTS.jsonl at {EVENTS_FILE_BYTES_PER_EVENT} bytes an event"
                f"{', each replay state kept' if keep_state else ''}), {free / GB:.1f} GB free. Free some space, "
                "choose another --out-dir, use fewer --vary-seeds or a smaller --vary-events, or drop --keep-state")
