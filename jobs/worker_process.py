"""Run the worker as a child process with given Settings (replay and demo use this).

The worker owns the embedded ClickHouse while it runs; the parent reads it only
after the child has exited (chDB opens a data directory in one process at a time)
or through the worker's /query view.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from pipeline.settings import ENV_PREFIX, Settings, settings_env
from pipeline.web.auth import auth_headers

# glibc's mmap threshold is dynamic: once a large block is freed it climbs (up to 32 MB), and from
# then on batch-sized arrays and buffers come from the heap, which keeps its peak. Fixed at 128 KiB,
# every freed batch goes back to the OS: a 443k-event replay's worker peaked about 50 MB lower
# (docs/benchmarks.md, "Replay"). Inherited by the linking child; a value in our environment wins.
# chDB allocates with its own jemalloc, which keeps freed pages for 5 s (dirty_decay_ms:5000 built in):
# with 0 they go back at once, about 90 MB off the same replay's peak at the same CPU. Its variable is
# JE_MALLOC_CONF (it ignores MALLOC_CONF).
MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072", "JE_MALLOC_CONF": "dirty_decay_ms:0"}


def worker_env(settings: Settings, env: dict[str, str] | None = None) -> dict[str, str]:
    """The child's environment: ours without DW_*, then ``settings`` as DW_*, then ``env``."""
    child_env = dict(MALLOC_ENV)
    child_env.update({k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)})
    child_env.update(settings_env(settings))
    child_env.update(env or {})
    return child_env


class WorkerProcess:
    def __init__(self, settings: Settings, *, bounded: bool, log_path: Path,
                 env: dict[str, str] | None = None, module: str = "jobs.cli") -> None:
        """Start ``distillwatch worker`` with ``settings`` as DW_* variables, plus ``env``; ``module``: the
        command's module (the fault tests run the same command with their hooks installed)."""
        self.settings = settings
        self.log_path = log_path
        args = [sys.executable, "-m", module, "worker", "--loglevel", "info"]
        if bounded:
            args.append("--bounded")
        child_env = worker_env(settings, env)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in wait()
        self.proc = subprocess.Popen(args, env=child_env, stdout=self._log, stderr=subprocess.STDOUT,
                                     cwd=Path(__file__).resolve().parent.parent)

    @property
    def base_url(self) -> str:
        return f"http://{self.settings.web_host}:{self.settings.web_port}"

    def stats(self) -> dict[str, object] | None:
        """The worker's /stats, or None while its web server is not up yet."""
        try:
            with urllib.request.urlopen(f"{self.base_url}/stats", timeout=2) as resp:
                return json.loads(resp.read())  # type: ignore[no-any-return]
        except OSError:
            return None

    def request_drain(self) -> None:
        req = urllib.request.Request(f"{self.base_url}/drain", data=b"", method="POST",
                                     headers=auth_headers(self.settings.web_token))
        with urllib.request.urlopen(req, timeout=5):
            pass

    def wait(self, timeout_s: float) -> int:
        """Exit status of the worker; on a timeout or an interrupt (Ctrl-C) it is killed, never orphaned."""
        deadline = time.monotonic() + timeout_s
        try:
            while self.proc.poll() is None:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"worker did not finish within {timeout_s:.0f}s; log: {self.log_path}")
                time.sleep(0.2)
            return self.proc.returncode
        except BaseException:
            self.kill()
            raise
        finally:
            self._log.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
