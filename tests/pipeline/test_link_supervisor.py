"""The linking child process supervisor, with real child processes (a small script stands in for the process)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.linking.supervisor import MODULE, LinkingSupervisor, child_env, linking_command
from pipeline.settings import load_settings
from tests.support.link_child import CHILD, WAIT_S, supervisor

ROOT = Path(__file__).resolve().parents[2]
# A worker stand-in: supervises CHILD (argv: SCRIPT DIR) and waits for ever.
PARENT = """
import asyncio, sys
from pipeline.linking.supervisor import LinkingSupervisor
async def main():
    sup = LinkingSupervisor([sys.executable, sys.argv[1], sys.argv[2], "wait"], {}, bounded=False)
    await sup.start()
    await asyncio.Event().wait()
asyncio.run(main())
"""


async def until(condition: object, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def starts(tmp_path: Path) -> int:
    log = tmp_path / "log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_a_failed_child_is_restarted_and_stopped_with_sigterm(tmp_path: Path) -> None:
    async def run() -> None:
        sup = supervisor(tmp_path, "fail-once")
        await sup.start()
        await until(lambda: (tmp_path / "ready").exists(), "the restarted child")
        assert sup.alive and sup.restarts == 1 and sup.exit_codes == [1] and sup.error is None
        await sup.stop()
        assert (tmp_path / "stopped").exists()  # SIGTERM reached it, and it exited by itself
        assert not sup.alive and sup.exit_codes == [1]  # the exit on stop is no failure
        assert starts(tmp_path) == 2 and not sup.ended.is_set()

    asyncio.run(run())


def test_the_child_gets_secrets_in_its_environment_only(tmp_path: Path) -> None:
    async def run() -> None:
        sup = supervisor(tmp_path, "exit0", bounded=True)
        await sup.start()
        await asyncio.wait_for(sup.ended.wait(), WAIT_S)

    asyncio.run(run())
    token, argv = (tmp_path / "token").read_text().split("|")
    assert token == "tok-secret" and "tok-secret" not in argv


def test_a_bounded_child_exiting_zero_has_finished(tmp_path: Path) -> None:
    async def run() -> LinkingSupervisor:
        sup = supervisor(tmp_path, "exit0", bounded=True)
        await sup.start()
        await asyncio.wait_for(sup.ended.wait(), WAIT_S)
        await sup.stop()
        return sup

    sup = asyncio.run(run())
    assert sup.finished and not sup.gave_up and sup.restarts == 0 and sup.error is None
    assert starts(tmp_path) == 1


def test_a_child_exiting_zero_while_unbounded_is_restarted(tmp_path: Path) -> None:
    async def run() -> LinkingSupervisor:
        sup = supervisor(tmp_path, "exit0", max_restarts=2)
        await sup.start()
        await asyncio.wait_for(sup.ended.wait(), WAIT_S)
        return sup

    sup = asyncio.run(run())
    assert sup.gave_up and not sup.finished and sup.restarts == 2 and starts(tmp_path) == 3


def test_a_bounded_child_that_keeps_failing_is_given_up(tmp_path: Path) -> None:
    async def run() -> LinkingSupervisor:
        sup = supervisor(tmp_path, "exit3", bounded=True, max_restarts=2)
        await sup.start()
        await asyncio.wait_for(sup.ended.wait(), WAIT_S)
        await sup.stop()
        return sup

    sup = asyncio.run(run())
    assert sup.gave_up and sup.restarts == 2 and sup.exit_codes == [3, 3, 3]
    assert sup.error is not None and "status 3" in sup.error and "given up" in sup.error
    assert starts(tmp_path) == 3


def test_a_child_ignoring_sigterm_is_killed_after_the_timeout(tmp_path: Path) -> None:
    async def run() -> tuple[LinkingSupervisor, float]:
        sup = supervisor(tmp_path, "stubborn", stop_timeout_s=1.0)
        await sup.start()
        await until(lambda: (tmp_path / "ready").exists(), "the child")
        started = time.monotonic()
        await sup.stop()
        return sup, time.monotonic() - started

    sup, took = asyncio.run(run())
    assert not sup.alive and took >= 1.0 and sup.restarts == 0
    assert not (tmp_path / "stopped").exists()


def test_the_worker_command_and_environment() -> None:
    settings = load_settings(kafka_bootstrap="broker:9093", web_token="tok-1", consumer_group="g1")
    argv = linking_command(bounded=True, drain_source="host:12")
    assert argv[1:] == ["-m", MODULE, "--bounded", "--drain-source", "host:12"]
    assert linking_command(bounded=False, drain_source="h:1")[3:] == ["--drain-source", "h:1"]
    env = child_env(settings)
    assert (env["DW_KAFKA_BOOTSTRAP"], env["DW_WEB_TOKEN"], env["DW_CONSUMER_GROUP"]) == ("broker:9093", "tok-1", "g1")
    assert not any("tok-1" in a for a in argv)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_the_child_stops_when_the_worker_is_killed_outright(tmp_path: Path) -> None:
    (tmp_path / "child.py").write_text(CHILD)
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(tmp_path / "child.py"), str(tmp_path)], cwd=ROOT)
    try:
        deadline = time.monotonic() + WAIT_S
        while not (tmp_path / "ready").exists():
            assert parent.poll() is None and time.monotonic() < deadline, "the child did not start"
            time.sleep(0.05)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=WAIT_S)
        while not (tmp_path / "stopped").exists():  # its SIGTERM handler ran: it did not outlive the parent
            assert time.monotonic() < deadline + WAIT_S, "the child outlived its parent"
            time.sleep(0.05)
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
