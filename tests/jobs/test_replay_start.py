"""replay's parent starts the worker before producing, drains it by a trigger file, and stays small."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.replay import (
    DRAIN_TRIGGER,
    REPLAY_BATCH_MAX_EVENTS,
    REPLAY_CHECKPOINT_INTERVAL_S,
    ReplayOptions,
    _replay_settings,
)
from pipeline.drain_marker import wait_for_file
from pipeline.settings import load_settings

REPO = Path(__file__).resolve().parents[2]


def test_replay_settings_name_the_drain_trigger_and_commit_often(tmp_path: Path) -> None:
    opts = ReplayOptions(events_path=tmp_path / "e.jsonl", report_path=tmp_path / "r.json")
    settings = _replay_settings(opts, "127.0.0.1:9092", tmp_path)
    assert settings.drain_trigger_file == tmp_path / DRAIN_TRIGGER
    # Written batches hold their raw messages until the commit: a replay commits often.
    assert settings.checkpoint_interval_s == REPLAY_CHECKPOINT_INTERVAL_S < load_settings().checkpoint_interval_s


def test_replay_batches_are_smaller_unless_the_environment_sets_them(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # The worker's peak holds several batches at once: a replay cuts them smaller than a live worker.
    opts = ReplayOptions(events_path=tmp_path / "e.jsonl", report_path=tmp_path / "r.json")
    monkeypatch.delenv("DW_BATCH_MAX_EVENTS", raising=False)
    settings = _replay_settings(opts, "127.0.0.1:9092", tmp_path)
    assert settings.batch_max_events == REPLAY_BATCH_MAX_EVENTS < load_settings().batch_max_events
    monkeypatch.setenv("DW_BATCH_MAX_EVENTS", "7000")
    assert _replay_settings(opts, "127.0.0.1:9092", tmp_path).batch_max_events == 7000


def test_the_replay_parent_does_not_load_the_worker_or_clickhouse() -> None:
    # Its RSS counts in the run's peak: the worker's libraries (chDB alone is about 250 MB) stay out.
    code = ("import sys, jobs.replay; heavy = {'chdb', 'faust', 'numba', 'clickhouse_connect'} & "
            "{m.split('.')[0] for m in sys.modules}; print(sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_wait_for_file_returns_once_the_file_exists(tmp_path: Path) -> None:
    trigger = tmp_path / "go"

    async def scenario() -> bool:
        waiter = asyncio.ensure_future(wait_for_file(trigger, lambda: False, 0.01))
        await asyncio.sleep(0)  # the waiter has looked once and found nothing
        assert not waiter.done()
        trigger.touch()
        return await asyncio.wait_for(waiter, timeout=30)

    assert asyncio.run(scenario()) is True


def test_wait_for_file_gives_up_when_stopping(tmp_path: Path) -> None:
    looks: list[int] = []

    def stopping() -> bool:
        looks.append(1)
        return len(looks) >= 3

    assert asyncio.run(wait_for_file(tmp_path / "never", stopping, 0.001)) is False
    assert len(looks) == 3


def test_wait_for_file_does_not_wait_for_a_file_already_there(tmp_path: Path) -> None:
    (tmp_path / "go").touch()
    assert asyncio.run(wait_for_file(tmp_path / "go", lambda: True, 60)) is True
