"""A real Alertmanager (Debian's prometheus-alertmanager 0.25) on loopback, and a recording HTTP receiver.

``Alertmanager`` runs the binary with the example configuration of infra/alertmanager/alertmanager.yml,
its webhook receivers pointed at a local ``Receiver`` and its waits shortened (group_wait and
group_interval 1 s, repeat_interval long, so a repeat never looks like a second page).

``Receiver`` is a threaded ``http.server`` that records every request (path, headers, JSON body)
and answers with scripted statuses (e.g. 503 twice, then 202), so it serves as the webhook target
of Alertmanager, a PagerDuty stand-in and a generic webhook, for async tests and subprocesses alike.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]

from jobs.embedded_broker import free_port
from pipeline.alerting.notifiers.alertmanager import AlertmanagerNotifier
from pipeline.alerting.notifiers.base import Notification, SendResult
from pipeline.alerting.transitions import AlertTransition

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_CONFIG = REPO / "infra" / "alertmanager" / "alertmanager.yml"
ALERTMANAGER_BIN = "/usr/bin/prometheus-alertmanager"
START_TIMEOUT_S = 60.0


def alertmanager_installed() -> bool:
    return Path(ALERTMANAGER_BIN).exists() or shutil.which("prometheus-alertmanager") is not None


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: Any  # parsed JSON (None if the body was not JSON)
    raw: bytes


class Receiver:
    """Records requests on ``http://127.0.0.1:<port>``; answers ``statuses`` in turn, then ``default``."""

    def __init__(self, statuses: Iterable[int] = (), default: int = 200) -> None:
        self.statuses = list(statuses)
        self.default = default
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                with receiver._lock:
                    receiver.requests.append(Received(self.path, dict(self.headers), body, raw))
                    status = receiver.statuses.pop(0) if receiver.statuses else receiver.default
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"status": "success"}' if status < 300 else b'{"status": "unavailable"}')

            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Receiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def received(self, path: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.requests if path is None or r.path == path]

    def set_statuses(self, statuses: Iterable[int], default: int | None = None) -> None:
        with self._lock:
            self.statuses = list(statuses)
            if default is not None:
                self.default = default


def wait_for(check: Callable[[], Any], *, timeout_s: float = 60.0, what: str = "condition") -> Any:
    """Poll ``check`` until it returns something truthy; AssertionError naming ``what`` after the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(0.2)


def example_config(webhook_url: str, *, group_wait: str = "1s", group_interval: str = "1s",
                repeat_interval: str = "24h") -> dict[str, Any]:
    """The example configuration with every webhook sent to ``webhook_url`` and short waits."""
    config = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    for receiver in config["receivers"]:
        for hook in receiver.get("webhook_configs", []):
            hook["url"] = webhook_url
    for route in _routes(config["route"]):
        for key, value in (("group_wait", group_wait), ("group_interval", group_interval),
                           ("repeat_interval", repeat_interval)):
            if key in route or route is config["route"]:
                route[key] = value
    return config


def _routes(route: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield route
    for child in route.get("routes", []):
        yield from _routes(child)


class Alertmanager:
    """``prometheus-alertmanager`` on 127.0.0.1 with ``config``; a context manager."""

    def __init__(self, workdir: Path, config: dict[str, Any], port: int | None = None) -> None:
        self.workdir = workdir
        self.config = config
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        config_file = self.workdir / "alertmanager.yml"
        config_file.write_text(yaml.safe_dump(self.config))
        self.log = open(self.workdir / "alertmanager.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [ALERTMANAGER_BIN, f"--config.file={config_file}", f"--storage.path={self.workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address="],
            stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(self._ready, timeout_s=START_TIMEOUT_S, what=f"Alertmanager ready on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
            self.log.close()

    def __enter__(self) -> Alertmanager:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"Alertmanager exited with {self.proc.returncode}; see {self.workdir}/alertmanager.log")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def alerts(self, **filters: str) -> list[dict[str, Any]]:
        """``GET /api/v2/alerts`` (active, silenced, inhibited and unprocessed), optionally by label equality."""
        query = "&".join(f"filter={urllib.parse.quote(f'{k}={json.dumps(v)}')}" for k, v in filters.items())
        with urllib.request.urlopen(f"{self.url}/api/v2/alerts?{query}", timeout=10) as response:
            return list(json.loads(response.read()))


def now_ms() -> int:
    return int(time.time() * 1000)


def send(am: Alertmanager, transitions: list[AlertTransition], resend_s: float = 60) -> list[SendResult]:
    """``transitions`` through the Alertmanager notifier to ``am``, in one request, as the outbox sends them."""
    async def go() -> list[SendResult]:
        notifier = AlertmanagerNotifier(am.url, resend_s=resend_s)
        try:
            return await notifier.send([Notification(f"n{i}", t, raised_at_ms=now_ms())
                                        for i, t in enumerate(transitions)])
        finally:
            await notifier.close()

    return asyncio.run(go())
