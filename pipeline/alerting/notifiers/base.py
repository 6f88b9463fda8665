"""The notifier interface: ``await notifier.send(batch) -> results``, one result per notification.

A notifier turns notifications (an ``AlertTransition`` plus its outbox id) into requests to one
receiver. ``send`` never raises for a receiver's failure: it returns, per notification,
``delivered``, ``retry`` (the receiver is down, slow or overloaded: try again later) or
``failed`` (the receiver refused the request for good, e.g. HTTP 400). Every request has a
timeout, so a hung receiver costs at most that long. Error texts never hold a secret.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Final, Literal

import aiohttp

from pipeline.alerting.transitions import AlertTransition

DELIVERED: Final = "delivered"
RETRY: Final = "retry"
FAILED: Final = "failed"
Outcome = Literal["delivered", "retry", "failed"]

REQUEST_TIMEOUT_S = 10.0
# Statuses that say "later": request timeout, rate limited, and every 5xx.
_RETRY_STATUSES = frozenset({408, 425, 429})
_ERROR_BODY_CHARS = 200


@dataclass(frozen=True)
class Notification:
    """One transition to deliver through one notifier; ``notification_id`` is its outbox row."""

    notification_id: str
    transition: AlertTransition
    raised_at_ms: int = 0  # wall clock when the outbox took the transition (0: unknown)


@dataclass(frozen=True)
class SendResult:
    outcome: Outcome
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome == DELIVERED


class Notifier(ABC):
    """One receiver. Subclasses set ``name`` and implement ``send``."""

    name: ClassVar[str]
    # Alertmanager forgets a firing alert whose endsAt passed: the delivery task re-sends
    # firing alerts to notifiers that say so, every DW_NOTIFY_RESEND_S.
    refreshes_firing: ClassVar[bool] = False

    @abstractmethod
    async def send(self, batch: Sequence[Notification]) -> list[SendResult]:
        """Deliver ``batch`` (in order); one result per notification, same order."""

    async def close(self) -> None:  # noqa: B027 - optional hook, most notifiers hold nothing
        """Release connections; the notifier is not used afterwards."""


class HttpNotifier(Notifier):
    """A notifier that POSTs JSON over one aiohttp session, created on first use (in the loop)."""

    def __init__(self, *, timeout_s: float = REQUEST_TIMEOUT_S, secrets: Sequence[str] = ()) -> None:
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._secrets = tuple(s for s in secrets if s)
        self._session: aiohttp.ClientSession | None = None

    async def post_json(self, url: str, body: Any, headers: Mapping[str, str] | None = None) -> SendResult:
        """POST ``body`` as JSON; 2xx is delivered, 408/425/429/5xx and network errors retry, other 4xx fail."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        try:
            async with self._session.post(url, json=body, headers=dict(headers or {})) as response:
                if 200 <= response.status < 300:
                    return SendResult(DELIVERED)
                text = (await response.text(errors="replace"))[:_ERROR_BODY_CHARS]
                outcome: Outcome = RETRY if response.status in _RETRY_STATUSES or response.status >= 500 else FAILED
                return SendResult(outcome, self.redact(f"HTTP {response.status} from {url}: {text.strip()}"))
        except TimeoutError:
            return SendResult(RETRY, f"no answer from {url} within {self.timeout.total:g}s")
        except (aiohttp.ClientError, OSError) as exc:
            return SendResult(RETRY, self.redact(f"{type(exc).__name__} posting to {url}: {exc}"))

    def redact(self, text: str) -> str:
        """``text`` with every secret of this notifier replaced by ***."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def rfc3339(ms: int) -> str:
    """Epoch milliseconds as RFC 3339 UTC, e.g. 2026-12-03T09:40:00.000Z."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def present_labels(labels: Mapping[str, str]) -> dict[str, str]:
    """Labels without empty values: as in Prometheus, an empty label is an absent one."""
    return {k: v for k, v in sorted(labels.items()) if v != ""}


def link(annotations: Mapping[str, str], name: str) -> str:
    """An annotation that is an absolute http(s) URL, else ''."""
    value = annotations.get(name, "")
    return value if value.startswith(("http://", "https://")) else ""


_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_SEPARATOR = 0xFF


def fingerprint(labels: Mapping[str, str]) -> str:
    """Alertmanager's fingerprint of a label set (Prometheus model: FNV-1a 64 over sorted name/value pairs)."""
    h = _FNV_OFFSET
    for name in sorted(labels):
        for part in (name, labels[name]):
            for byte in part.encode():
                h = ((h ^ byte) * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
            h = ((h ^ _SEPARATOR) * _FNV_PRIME) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"
