"""``distillwatch grafana deploy``: push the datasources, the folder and the dashboards through grafana-client.

Idempotent: everything keeps its uid, dashboards are saved with ``overwrite: true``
into one folder, and what the server already holds unchanged is left alone. A plan
(new / changed / unchanged per object) is computed from GETs first; ``dry_run``
stops there, so a dry run sends no write. The token (``GRAFANA_TOKEN``) goes only
into the Authorization header; it is never printed or put into an error message.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

import niquests
from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException, TokenAuth

from jobs.grafana.build import FOLDER, dashboards, to_dict
from jobs.grafana.datasources import DATASOURCES, Datasource

TOKEN_ENV = "GRAFANA_TOKEN"
COMMIT_MESSAGE = "distillwatch grafana deploy"
# Keys Grafana sets on a saved dashboard itself: not part of what we compare.
_SERVER_KEYS = ("id", "version")
# Datasource fields we set (the server adds id, orgId, readOnly, …; secrets are write-only).
_DATASOURCE_KEYS = ("name", "type", "uid", "access", "url", "jsonData")


class DeployError(Exception):
    """The deploy could not run or a request failed; the message names the object, never the token."""


class Action(StrEnum):
    NEW = "new"
    CHANGED = "changed"
    UNCHANGED = "unchanged"


@dataclass
class Step:
    """One object of the plan and what deploying it means."""

    kind: str  # datasource | folder | dashboard
    uid: str
    title: str
    action: Action
    apply: Callable[[], Any] = field(repr=False, default=lambda: None)

    def describe(self) -> str:
        return f"{self.kind:<10} {self.uid:<14} {self.action.value:<9} {self.title}"


def connect(url: str, token: str, timeout: float = 10.0) -> GrafanaApi:
    """A grafana-client API for ``url`` (a sub-path such as https://host/grafana/ is kept) with a bearer token."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DeployError(f"--url {url!r}: expected http(s)://host[:port][/path]")
    # grafana-client appends "api" to the path as given: a sub-path needs its trailing slash.
    prefix = parts.path.strip("/")
    return GrafanaApi(TokenAuth(token), host=parts.hostname, port=parts.port, protocol=parts.scheme,
                      url_path_prefix=f"{prefix}/" if prefix else "", timeout=timeout)


def plan(api: GrafanaApi, *, folder: str = FOLDER, with_datasources: bool = True,
         environ: Mapping[str, str] | None = None) -> list[Step]:
    """What a deploy would do, from GETs only: datasources, then the folder, then the dashboards."""
    steps: list[Step] = []
    if with_datasources:
        steps += [_datasource_step(api, ds, environ) for ds in DATASOURCES]
    steps.append(_folder_step(api, folder))
    steps += [_dashboard_step(api, to_dict(model), folder) for model in dashboards()]
    return steps


def deploy(api: GrafanaApi, steps: list[Step]) -> list[Step]:
    """Apply every new or changed step in order; returns the steps applied."""
    applied = []
    for step in steps:
        if step.action is Action.UNCHANGED:
            continue
        try:
            step.apply()
        except GrafanaException as exc:
            raise DeployError(f"{step.kind} {step.uid}: Grafana answered {exc.status_code}: "
                              f"{_message(exc)}") from None
        except niquests.exceptions.RequestException as exc:
            raise DeployError(f"{step.kind} {step.uid}: cannot reach Grafana: {type(exc).__name__}") from None
        applied.append(step)
    return applied


def _get(call: Callable[[], Any], what: str) -> Any | None:
    """The object, or None when Grafana answers 404."""
    try:
        return call()
    except GrafanaClientError as exc:
        if exc.status_code == 404:
            return None
        raise DeployError(f"reading {what}: Grafana answered {exc.status_code}: {_message(exc)}") from None
    except GrafanaException as exc:
        raise DeployError(f"reading {what}: Grafana answered {exc.status_code}: {_message(exc)}") from None
    except niquests.exceptions.RequestException as exc:
        raise DeployError(f"reading {what}: cannot reach Grafana: {type(exc).__name__}: {exc}") from None


def _message(exc: GrafanaException) -> str:
    response = exc.response
    if isinstance(response, dict) and response.get("message"):
        return str(response["message"])
    return str(exc.message if hasattr(exc, "message") else exc)


def _datasource_step(api: GrafanaApi, ds: Datasource, environ: Mapping[str, str] | None) -> Step:
    try:
        model = ds.api_model(environ)
    except ValueError as exc:
        raise DeployError(f"{exc} (or pass --no-datasources)") from None
    current = _get(lambda: api.datasource.get_datasource_by_uid(ds.uid), f"datasource {ds.uid}")
    if current is None:
        return Step("datasource", ds.uid, ds.name, Action.NEW, lambda: api.datasource.create_datasource(model))
    wanted = {k: model.get(k) for k in _DATASOURCE_KEYS}
    have = {k: current.get(k) for k in _DATASOURCE_KEYS}
    # jsonData on the server may hold more keys (set in the UI); only ours must match.
    have["jsonData"] = {k: (current.get("jsonData") or {}).get(k) for k in model.get("jsonData", {})}
    secrets_set = all((current.get("secureJsonFields") or {}).get(k) for k in model.get("secureJsonData", {}))
    action = Action.UNCHANGED if wanted == have and secrets_set else Action.CHANGED
    return Step("datasource", ds.uid, ds.name, action,
                lambda: api.datasource.update_datasource_by_uid(ds.uid, model))


def _folder_step(api: GrafanaApi, folder: str) -> Step:
    current = _get(lambda: api.folder.get_folder(folder), f"folder {folder}")
    if current is None:
        return Step("folder", folder, folder, Action.NEW, lambda: api.folder.create_folder(folder, uid=folder))
    action = Action.UNCHANGED if current.get("title") == folder else Action.CHANGED
    return Step("folder", folder, folder, action,
                lambda: api.folder.update_folder(folder, title=folder, overwrite=True))


def _dashboard_step(api: GrafanaApi, model: dict[str, Any], folder: str) -> Step:
    uid = model["uid"]
    body = {"dashboard": {**model, "id": None}, "folderUid": folder, "overwrite": True, "message": COMMIT_MESSAGE}
    current = _get(lambda: api.dashboard.get_dashboard(uid), f"dashboard {uid}")
    if current is None:
        action = Action.NEW
    else:
        stored = {k: v for k, v in (current.get("dashboard") or {}).items() if k not in _SERVER_KEYS}
        same_folder = (current.get("meta") or {}).get("folderUid") == folder
        action = Action.UNCHANGED if stored == model and same_folder else Action.CHANGED
    return Step("dashboard", uid, model["title"], action, lambda: api.dashboard.update_dashboard(body))
