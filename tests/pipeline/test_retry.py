"""The one retry loop: held until the write succeeds, back-off per failure, other errors not swallowed."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import KafkaConnectionError

from pipeline import retry as retry_module
from pipeline.retry import fetch_or_wait, retry


class Flaky:
    """Raises ``error`` on the first ``failures`` calls, then returns how many calls it took."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    async def __call__(self) -> int:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return self.calls


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(retry_module.asyncio, "sleep", sleep)
    return slept


def test_retries_until_it_succeeds_with_the_back_off_in_order_then_the_last_repeated(pauses: list[float]) -> None:
    failed: list[int] = []
    flaky = Flaky(4, ConnectionError("down"))
    got = asyncio.run(retry(flaky, ConnectionError, "down", backoff_s=(0.5, 1.0, 2.0),
                            on_failure=lambda: failed.append(flaky.calls)))
    assert got == 5
    assert pauses == [0.5, 1.0, 2.0, 2.0]
    assert failed == [1, 2, 3, 4]  # reported once per failure, before its pause


def test_an_error_that_is_not_retryable_propagates_at_once(pauses: list[float]) -> None:
    flaky = Flaky(1, ValueError("a bug"))
    with pytest.raises(ValueError, match="a bug"):
        asyncio.run(retry(flaky, ConnectionError, "down", backoff_s=(0.5,)))
    assert flaky.calls == 1 and pauses == []


def test_a_failure_after_give_up_turns_true_propagates_instead_of_waiting(pauses: list[float]) -> None:
    stopping = {"now": False}
    failed: list[int] = []

    def fail_then_stop() -> None:
        failed.append(1)
        stopping["now"] = len(failed) >= 2  # a stop is asked for during the second pause

    flaky = Flaky(5, ConnectionError("down"))
    with pytest.raises(ConnectionError, match="down"):
        asyncio.run(retry(flaky, ConnectionError, "down", backoff_s=(0.5,), on_failure=fail_then_stop,
                          give_up=lambda: stopping["now"]))
    assert flaky.calls == 3 and pauses == [0.5, 0.5]  # the third failure is not retried


def test_without_a_back_off_it_uses_retry_backoff_s_as_patched_at_call_time(
    pauses: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert retry_module.RETRY_BACKOFF_S[0] > 0  # the default pauses
    monkeypatch.setattr(retry_module, "RETRY_BACKOFF_S", (0.25, 0.0))  # how tests turn the pauses off
    assert asyncio.run(retry(Flaky(3, ConnectionError("down")), ConnectionError, "down")) == 4
    assert pauses == [0.25, 0.0, 0.0]


class Consumer:
    """An aiokafka-like consumer whose ``getmany`` raises ``errors`` first, then returns ``records``."""

    def __init__(self, errors: list[Exception], records: dict[str, list[int]]) -> None:
        self.errors, self.records, self.calls = errors, records, []

    async def getmany(self, *, timeout_ms: int, max_records: int) -> dict[str, list[int]]:
        self.calls.append((timeout_ms, max_records))
        if self.errors:
            raise self.errors.pop(0)
        return self.records


def test_a_failed_fetch_is_logged_paused_and_returns_nothing_then_the_next_fetch_reads(
        pauses: list[float], caplog: pytest.LogCaptureFixture) -> None:
    consumer = Consumer([KafkaConnectionError("broker gone")], {"tp": [1, 2]})
    first = asyncio.run(fetch_or_wait(consumer, "link results", timeout_ms=500, max_records=64))
    second = asyncio.run(fetch_or_wait(consumer, "link results", timeout_ms=500, max_records=64))
    assert first == {} and second == {"tp": [1, 2]}
    assert pauses == [retry_module.FETCH_RETRY_S]
    assert consumer.calls == [(500, 64), (500, 64)]
    assert "link results: fetch failed" in caplog.text and "broker gone" in caplog.text


def test_a_fetch_error_that_is_not_kafkas_propagates(pauses: list[float]) -> None:
    consumer = Consumer([ValueError("a bug")], {})
    with pytest.raises(ValueError, match="a bug"):
        asyncio.run(fetch_or_wait(consumer, "x", timeout_ms=1, max_records=1))
    assert pauses == []
