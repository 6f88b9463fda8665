from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.worker_process import MALLOC_ENV, settings_env, worker_env
from pipeline.settings import load_settings


def test_secrets_reach_the_child_worker_as_their_values() -> None:
    env = settings_env(load_settings(web_token="tok-1", pagerduty_routing_key="rk-2"))
    # str(SecretStr) is '**********': a child given that would refuse every request with the real token.
    assert env["DW_WEB_TOKEN"] == "tok-1"
    assert env["DW_PAGERDUTY_ROUTING_KEY"] == "rk-2"
    assert settings_env(load_settings())["DW_WEB_TOKEN"] == ""


def test_the_child_worker_gets_a_fixed_malloc_mmap_threshold(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    assert worker_env(load_settings())["MALLOC_MMAP_THRESHOLD_"] == MALLOC_ENV["MALLOC_MMAP_THRESHOLD_"]
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")  # an operator's own value wins
    assert worker_env(load_settings())["MALLOC_MMAP_THRESHOLD_"] == "65536"


def test_chdbs_jemalloc_reads_the_decay_the_child_worker_gets() -> None:
    """chDB's own jemalloc takes JE_MALLOC_CONF (MALLOC_CONF, tried before, never reached it)."""
    script = ("import chdb; print(chdb.query(\"SELECT * FROM system.jemalloc_stats\", 'TSVRaw'))")
    env = {**os.environ, **MALLOC_ENV}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    decay = MALLOC_ENV["JE_MALLOC_CONF"].removeprefix("dirty_decay_ms:")
    assert f"opt.dirty_decay_ms: {decay} (arenas.dirty_decay_ms: {decay})" in done.stdout


def test_the_child_worker_gets_settings_not_our_dw_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DW_TOPIC_EVENTS", "from-our-environment")
    env = worker_env(load_settings(topic_events="given", drain_trigger_file=tmp_path / "go"), {"X_HOOK": "1"})
    assert env["DW_TOPIC_EVENTS"] == "given"
    assert env["DW_DRAIN_TRIGGER_FILE"] == str(tmp_path / "go")
    assert env["X_HOOK"] == "1"
