"""The evaluation's free-space check: it refuses, naming the directory and the sizes, before writing anything."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from jobs.eval import disk
from jobs.eval.disk import EVENTS_FILE_BYTES_PER_EVENT, STATE_BYTES_PER_EVENT, check_free_space
from jobs.eval.run import EvalOptions, run_eval
from jobs.eval.scenario import OptionsError


def free_bytes(monkeypatch: pytest.MonkeyPatch, free: int) -> list[Path]:
    asked: list[Path] = []
    real = shutil.disk_usage(Path.cwd())

    def usage(path: Any) -> Any:
        asked.append(Path(path))
        return real._replace(total=10 * free, used=9 * free, free=free)

    monkeypatch.setattr(disk, "disk_usage", usage)
    return asked


def test_kept_states_count_per_run_and_an_unkept_one_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = [(tmp_path / "eval", 1000), (tmp_path / "eval" / "varied-8", 500)]
    files = 1500 * EVENTS_FILE_BYTES_PER_EVENT
    free_bytes(monkeypatch, files + 1500 * STATE_BYTES_PER_EVENT)
    check_free_space(runs, keep_state=True, scratch=tmp_path)  # fits exactly
    free_bytes(monkeypatch, files + 1500 * STATE_BYTES_PER_EVENT - 1)
    with pytest.raises(OptionsError, match=r"not enough free space .*\(2 run\(s\), 1,500 events"):
        check_free_space(runs, keep_state=True, scratch=tmp_path)
    # Not kept: one replay state at a time (the largest run's), in the scratch directory (same disk here).
    free_bytes(monkeypatch, files + 1000 * STATE_BYTES_PER_EVENT)
    check_free_space(runs, keep_state=False, scratch=tmp_path)


def test_an_events_file_about_to_be_overwritten_counts_as_free(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "eval"
    out.mkdir()
    (out / "EVENTS.jsonl").write_bytes(b"x" * 700)
    free_bytes(monkeypatch, 1000 * (EVENTS_FILE_BYTES_PER_EVENT + STATE_BYTES_PER_EVENT) - 700)
    check_free_space([(out, 1000)], keep_state=True, scratch=tmp_path)
    (out / "EVENTS.jsonl").unlink()
    with pytest.raises(OptionsError, match=str(out)):
        check_free_space([(out, 1000)], keep_state=True, scratch=tmp_path)


def test_a_directory_not_created_yet_is_checked_on_its_nearest_parent(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    asked = free_bytes(monkeypatch, 10**12)
    check_free_space([(tmp_path / "a" / "b" / "varied-8", 10)], keep_state=True, scratch=tmp_path)
    assert asked == [tmp_path]


def test_eval_refuses_before_writing_anything(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    free_bytes(monkeypatch, 10**6)
    out = tmp_path / "eval"
    with pytest.raises(OptionsError, match="--vary-seeds"):
        run_eval(EvalOptions(out_dir=out, events=20_000, vary_seeds=2, keep_state=True))
    assert not out.exists()
