"""The worker's linking handle: how a bounded worker's wait for the linking drain ends, and what it reports."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from pipeline.linking import handle
from pipeline.linking.handle import Linking
from pipeline.linking.results import LinkResult, encode_result
from pipeline.linking.supervisor import LinkingSupervisor
from tests.support.link_child import WAIT_S, supervisor
from tests.support.metrics import make_linking


def wait_with_child(tmp_path: Path, mode: str, **kw: int) -> Linking:
    """A bounded worker's wait for the drain, its linking child a CHILD script in ``mode`` (never drains)."""
    async def run() -> Linking:
        sup: LinkingSupervisor = supervisor(tmp_path, mode, bounded=True, **kw)
        linking = make_linking(supervisor=sup)
        await sup.start()
        await asyncio.wait_for(linking.wait_drained(), WAIT_S)
        await sup.stop()
        return linking

    return asyncio.run(run())


def test_the_drained_result_of_this_source_ends_the_wait() -> None:
    async def run() -> Linking:
        linking = make_linking()
        waiting = asyncio.ensure_future(linking.wait_drained())
        await linking.results.apply(encode_result(LinkResult(drained_sources=["someone-else"])))
        await asyncio.sleep(0)
        assert not waiting.done()
        await linking.results.apply(encode_result(LinkResult(drained_sources=["me"])))  # make_linking's source
        await asyncio.wait_for(waiting, WAIT_S)
        return linking

    linking = asyncio.run(run())
    assert linking.drain_error is None and linking.as_dict()["drained"] is True


def test_a_child_that_exits_without_sending_the_drain_ends_the_wait_with_an_error(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handle, "DRAINED_RESULT_GRACE_S", 0.2)

    linking = wait_with_child(tmp_path, "exit0")
    assert linking.drain_error == "the linking process exited without draining this worker's source"
    assert linking.error == linking.drain_error and not linking.up


def test_a_child_given_up_ends_the_wait_with_its_failure(tmp_path: Path) -> None:
    linking = wait_with_child(tmp_path, "exit3", max_restarts=1)
    assert linking.drain_error is not None and "status 3" in linking.drain_error
    assert linking.restarts == 1 and linking.as_dict()["process_restarts"] == 1


def test_external_linking_is_down_once_its_results_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    linking = make_linking()
    assert linking.up and linking.as_dict()["mode"] == "external"
    monkeypatch.setattr(handle, "RESULTS_STALE_S", -1.0)
    assert not linking.up and "no result from the external linking process" in (linking.error or "")
