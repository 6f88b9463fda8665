"""The one retry loop: held until the write succeeds, back-off per failure, other errors not swallowed."""

from __future__ import annotations

import asyncio

import pytest

from pipeline import retry as retry_module
from pipeline.retry import retry


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
    got = asyncio.run(retry(flaky, ConnectionError, "down", (0.5, 1.0, 2.0), lambda: failed.append(flaky.calls)))
    assert got == 5
    assert pauses == [0.5, 1.0, 2.0, 2.0]
    assert failed == [1, 2, 3, 4]  # reported once per failure, before its pause


def test_an_error_that_is_not_retryable_propagates_at_once(pauses: list[float]) -> None:
    flaky = Flaky(1, ValueError("a bug"))
    with pytest.raises(ValueError, match="a bug"):
        asyncio.run(retry(flaky, ConnectionError, "down", (0.5,)))
    assert flaky.calls == 1 and pauses == []
