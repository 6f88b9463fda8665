"""A stand-in for the slice of Grafana's HTTP API that ``distillwatch grafana deploy`` uses.

Holds datasources, folders and dashboards in memory, answers like Grafana (404 for
unknown uids, ids and versions on saved objects), refuses requests without the
expected bearer token, and records every request for the tests to inspect.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Request:
    method: str
    path: str
    authorization: str | None
    body: Any


@dataclass
class GrafanaState:
    token: str
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)  # uid -> {"dashboard", "folderUid"}
    requests: list[Request] = field(default_factory=list)
    next_id: int = 1

    def writes(self) -> list[Request]:
        return [r for r in self.requests if r.method != "GET"]

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id


def _handler(state: GrafanaState) -> type[BaseHTTPRequestHandler]:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
            pass

        def _reply(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            auth = self.headers.get("Authorization")
            with lock:
                state.requests.append(Request(method, self.path, auth, body))
                if auth != f"Bearer {state.token}":
                    self._reply(401, {"message": "Unauthorized"})
                    return
                status, answer = route(state, method, self.path, body)
            self._reply(status, answer)

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def do_PUT(self) -> None:
            self._handle("PUT")

        def do_DELETE(self) -> None:
            self._handle("DELETE")

    return Handler


def route(state: GrafanaState, method: str, path: str, body: Any) -> tuple[int, Any]:
    not_found = (404, {"message": "not found"})
    if m := re.fullmatch(r"/api/datasources/uid/([\w-]+)", path):
        uid = m[1]
        if method == "GET":
            return (200, state.datasources[uid]) if uid in state.datasources else not_found
        if method == "PUT" and uid in state.datasources:
            state.datasources[uid] = _stored_datasource(body, state.datasources[uid]["id"])
            return 200, {"message": "Datasource updated"}
        return not_found
    if path == "/api/datasources" and method == "POST":
        if body["uid"] in state.datasources:
            return 409, {"message": "data source with the same uid already exists"}
        state.datasources[body["uid"]] = _stored_datasource(body, state.new_id())
        return 200, {"message": "Datasource added"}
    if m := re.fullmatch(r"/api/folders/([\w-]+)", path):
        uid = m[1]
        if method == "GET":
            return (200, state.folders[uid]) if uid in state.folders else not_found
        if method == "PUT" and uid in state.folders:
            state.folders[uid]["title"] = body["title"]
            return 200, state.folders[uid]
        return not_found
    if path == "/api/folders" and method == "POST":
        if body.get("uid") in state.folders:
            return 409, {"message": "a folder with the same uid already exists"}
        state.folders[body["uid"]] = {"uid": body["uid"], "title": body["title"], "id": state.new_id()}
        return 200, state.folders[body["uid"]]
    if m := re.fullmatch(r"/api/dashboards/uid/([\w-]+)", path):
        saved = state.dashboards.get(m[1])
        if method != "GET" or saved is None:
            return not_found
        return 200, {"dashboard": saved["dashboard"], "meta": {"folderUid": saved["folderUid"]}}
    if path == "/api/dashboards/db" and method == "POST":
        dashboard = dict(body["dashboard"])
        uid = dashboard["uid"]
        old = state.dashboards.get(uid)
        if old is not None and not body.get("overwrite"):
            return 412, {"message": "A dashboard with the same uid already exists", "status": "name-exists"}
        if body.get("folderUid") not in state.folders:
            return 400, {"message": "folder not found"}
        dashboard["id"] = old["dashboard"]["id"] if old else state.new_id()
        dashboard["version"] = old["dashboard"]["version"] + 1 if old else 1
        state.dashboards[uid] = {"dashboard": dashboard, "folderUid": body["folderUid"]}
        return 200, {"uid": uid, "status": "success", "version": dashboard["version"]}
    return 404, {"message": f"no route {method} {path}"}


def _stored_datasource(body: dict[str, Any], ds_id: int) -> dict[str, Any]:
    stored = {k: v for k, v in body.items() if k != "secureJsonData"}
    stored["id"] = ds_id
    stored["readOnly"] = False
    stored["secureJsonFields"] = {k: True for k in body.get("secureJsonData", {})}  # Grafana never returns secrets
    return stored


class GrafanaStandIn:
    """``with GrafanaStandIn(token) as g: … g.url …`` on 127.0.0.1, a free port."""

    def __init__(self, token: str) -> None:
        self.state = GrafanaState(token)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.state))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> GrafanaStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
