"""The worker's linking child process (DW_LINKING=child): start it, restart it when it dies, stop it.

The child is ``python -m pipeline.linking.process`` with the worker's settings as DW_* variables
(secrets stay in the environment; the command line holds flags only). A child that exits is
restarted after a back-off from ``BACKOFF_START_S`` to ``BACKOFF_CAP_S`` (reset after
``STABLE_AFTER_S``); a bounded child's exit 0 is its end (``finished``), and one that keeps
failing is given up after ``BOUNDED_MAX_RESTARTS`` (``gave_up``). ``stop``: SIGTERM, then SIGKILL
after ``stop_timeout_s``; on Linux a parent-death signal ends the child with the worker.
Details: docs/linking.md ("Topology": Who runs it).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence

from pipeline.settings import ENV_PREFIX, Settings, settings_env

log = logging.getLogger(__name__)

MODULE = "pipeline.linking.process"
BACKOFF_START_S = 0.5
BACKOFF_CAP_S = 30.0
# A child that ran this long before exiting starts the back-off from the beginning again.
STABLE_AFTER_S = 60.0
STOP_TIMEOUT_S = 30.0
# After its drained result an active bounded child exits by itself (a checkpoint first); a standby
# child (another worker's is active) never does: it gets SIGTERM after this wait.
DRAINED_EXIT_WAIT_S = 5.0
BOUNDED_MAX_RESTARTS = 3
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def parent_death_signal(sig: int = signal.SIGTERM) -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to send ``sig`` to the child when this process dies (None elsewhere)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # bound here: the forked child only calls it
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def set_signal() -> None:
        prctl(PR_SET_PDEATHSIG, int(sig))
        if os.getppid() != parent:  # the parent died before prctl: no signal will come
            os.kill(os.getpid(), sig)

    return set_signal


def linking_command(*, bounded: bool, drain_source: str | None) -> list[str]:
    """The child's argv: flags only, never a setting (those travel in the environment)."""
    args = [sys.executable, "-m", MODULE]
    if bounded:
        args.append("--bounded")
    if drain_source is not None:
        args += ["--drain-source", drain_source]
    return args


def child_env(settings: Settings) -> dict[str, str]:
    """This process's environment with every DW_* variable replaced by ``settings`` (CLI overrides included)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env.update(settings_env(settings))
    return env


class LinkingSupervisor:
    def __init__(self, command: Sequence[str], env: dict[str, str], *, bounded: bool,
                 stop_timeout_s: float = STOP_TIMEOUT_S, backoff_start_s: float = BACKOFF_START_S,
                 backoff_cap_s: float = BACKOFF_CAP_S, max_restarts: int | None = None) -> None:
        """``max_restarts``: give up after this many (default: ``BOUNDED_MAX_RESTARTS`` when bounded, never else)."""
        self.command = list(command)
        self.env = env
        self.bounded = bounded
        self.stop_timeout_s = stop_timeout_s
        self.backoff_start_s = backoff_start_s
        self.backoff_cap_s = backoff_cap_s
        self.max_restarts = max_restarts if max_restarts is not None else (BOUNDED_MAX_RESTARTS if bounded else None)
        self.restarts = 0
        self.exit_codes: list[int] = []
        self.finished = False  # bounded: the child exited 0 after its drain
        self.gave_up = False  # bounded: it kept failing, no more restarts
        self.ended = asyncio.Event()  # finished or gave_up: no child will run again
        self._proc: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    @classmethod
    def for_worker(cls, settings: Settings, *, bounded: bool, drain_source: str) -> LinkingSupervisor:
        return cls(linking_command(bounded=bounded, drain_source=drain_source), child_env(settings), bounded=bounded)

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def error(self) -> str | None:
        """Why linking is not running right now (None while the child runs or after a clean finish)."""
        if self.alive or self.finished or not self.exit_codes:
            return None
        state = "given up" if self.gave_up else "restarting"
        return f"linking process exited with status {self.exit_codes[-1]} ({state}; {self.restarts} restarts)"

    async def start(self) -> None:
        await self._spawn()
        self._task = asyncio.create_task(self._watch(), name="linking-supervisor")

    async def _spawn(self) -> None:
        self._proc = await asyncio.create_subprocess_exec(*self.command, env=self.env,
                                                          preexec_fn=parent_death_signal())
        log.info("linking process started (pid %d): %s", self._proc.pid, " ".join(self.command))

    async def _watch(self) -> None:
        attempt = 0
        assert self._proc is not None
        while True:
            started = time.monotonic()
            code = await self._proc.wait()
            if self._stopping.is_set():
                return
            self.exit_codes.append(code)
            if code == 0 and self.bounded:
                log.info("linking process finished (bounded run drained)")
                self.finished = True
                self.ended.set()
                return
            if self.max_restarts is not None and self.restarts >= self.max_restarts:
                log.error("linking process exited with status %d; giving up after %d restarts", code, self.restarts)
                self.gave_up = True
                self.ended.set()
                return
            if time.monotonic() - started >= STABLE_AFTER_S:
                attempt = 0
            pause = min(self.backoff_start_s * 2 ** attempt, self.backoff_cap_s)
            attempt += 1
            log.error("linking process exited with status %d; restart %d in %.1fs", code, self.restarts + 1, pause)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=pause)
            if self._stopping.is_set():
                return
            self.restarts += 1
            await self._spawn()

    async def wait_exit(self, timeout_s: float) -> int | None:
        """The child's exit status once it has exited by itself (None: still running after ``timeout_s``)."""
        proc = self._proc
        if proc is None:
            return None
        try:
            return await asyncio.wait_for(proc.wait(), timeout=timeout_s)
        except TimeoutError:
            return None

    async def stop(self) -> None:
        """No more restarts; SIGTERM the child, SIGKILL it after ``stop_timeout_s``."""
        self._stopping.set()
        proc = self._proc
        if proc is not None and proc.returncode is None:
            started = time.monotonic()
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                code = await asyncio.wait_for(proc.wait(), timeout=self.stop_timeout_s)
                log.info("linking process stopped (status %d) in %.1fs", code, time.monotonic() - started)
            except TimeoutError:
                log.error("linking process did not stop within %.0fs: killed", self.stop_timeout_s)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        if self._task is not None:
            task, self._task = self._task, None
            try:
                await task
            except Exception:  # a failed re-start (e.g. no python): the worker stops regardless
                log.exception("linking supervisor failed")
