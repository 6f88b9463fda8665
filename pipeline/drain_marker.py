"""Bounded runs' files: the marker a worker writes when it drained (the replay reads it), and the
trigger a worker waits for before it drains (the replay creates it once the input is produced).

A module of its own so that the replay's parent process can check it without importing the
worker (Faust, Numba, ClickHouse): the parent's resident memory counts in the replay's peak RSS.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

from pipeline.settings import Settings

# Written into DW_DATA_DIR by a bounded worker that drained (replay checks it).
DRAIN_MARKER = "drained.json"


def drain_marker_path(settings: Settings) -> Path:
    return settings.data_dir / DRAIN_MARKER


def write_drain_marker(settings: Settings, linking_error: BaseException | str | None) -> None:
    """Tell the parent of a bounded run how it ended: an exit status alone cannot say
    whether every stage drained (a linking process that failed ends the wait too)."""
    path = drain_marker_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    error = linking_error if linking_error is None or isinstance(linking_error, str) else repr(linking_error)
    body = {"drained": True, "linking_error": error}
    path.write_text(json.dumps(body) + "\n")


async def wait_for_file(path: Path, stopping: Callable[[], bool], poll_s: float) -> bool:
    """True once ``path`` exists, False if ``stopping()`` turns true first (DW_DRAIN_TRIGGER_FILE).

    Polled: the replay that creates the file is another process, and a file that appears
    between two looks is seen at most ``poll_s`` later.
    """
    while not path.exists():
        if stopping():
            return False
        await asyncio.sleep(poll_s)
    return True
