"""replay refuses a run whose worker exited 0 without every stage draining."""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.replay import ReplayError, _check_drained
from pipeline.app import drain_marker_path, write_drain_marker
from pipeline.settings import Settings


class _Worker:
    def log_tail(self) -> str:
        return "(worker log)"


def test_no_marker_means_the_worker_did_not_drain(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    with pytest.raises(ReplayError, match="without draining"):
        _check_drained(settings, _Worker())  # type: ignore[arg-type]


def test_a_linking_failure_fails_the_replay(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    write_drain_marker(settings, RuntimeError("stage B crashed"))
    with pytest.raises(ReplayError, match="stage B crashed"):
        _check_drained(settings, _Worker())  # type: ignore[arg-type]


def test_a_clean_drain_passes(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    write_drain_marker(settings, None)
    assert drain_marker_path(settings).is_file()
    _check_drained(settings, _Worker())  # type: ignore[arg-type]
