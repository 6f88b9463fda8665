"""The Grafana datasources the dashboards query: uids, plugin types and their provisioning.

The single place that names a datasource: dashboards reference ``CLICKHOUSE`` and
``PROMETHEUS`` by uid, the provisioning file and ``distillwatch grafana deploy``
create them from ``DATASOURCES``. Connection details are ``${VAR}`` placeholders,
expanded by Grafana when it reads the provisioning file and by ``deploy`` from its
own environment (README, "Grafana in three steps", lists the variables).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from grafana_foundation_sdk.models.dashboard import DataSourceRef

CLICKHOUSE_PLUGIN = "grafana-clickhouse-datasource"
PROMETHEUS_PLUGIN = "prometheus"


@dataclass(frozen=True)
class Datasource:
    """One datasource: its identity and the Grafana datasource model with ``${VAR}`` placeholders."""

    uid: str
    name: str
    type: str
    json_data: Mapping[str, Any]
    secure_json_data: Mapping[str, str]
    url: str = ""
    # Values ``deploy`` uses for these variables when they are unset or empty (Grafana itself has no
    # defaults in provisioning files: there an unset variable is an empty string).
    env_defaults: Mapping[str, str] = field(default_factory=dict)
    # jsonData keys the plugin's settings page saves as booleans.
    bool_keys: tuple[str, ...] = ()

    @property
    def env_names(self) -> set[str]:
        """The environment variables the placeholders name."""
        return {name for text in _strings(self.provisioning()) for name in _PLACEHOLDER.findall(text)}

    @property
    def ref(self) -> DataSourceRef:
        return DataSourceRef(type_val=self.type, uid=self.uid)

    def provisioning(self) -> dict[str, Any]:
        """The entry of ``datasources:`` in a Grafana provisioning file (placeholders left for Grafana)."""
        entry: dict[str, Any] = {"name": self.name, "type": self.type, "uid": self.uid, "access": "proxy",
                                 "editable": False, "jsonData": dict(self.json_data)}
        if self.url:
            entry["url"] = self.url
        if self.secure_json_data:
            entry["secureJsonData"] = dict(self.secure_json_data)
        return entry

    def api_model(self, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
        """The body of Grafana's datasource API, placeholders expanded from ``environ`` (default: os.environ).

        Raises ValueError naming every variable that is unset: a datasource with an
        empty host would be created and fail only when a panel queries it.
        """
        given = os.environ if environ is None else environ
        env = {**self.env_defaults, **{k: v for k, v in given.items() if v}}
        missing = sorted(name for name in self.env_names if name not in env)
        if missing:
            raise ValueError(f"datasource {self.name!r} needs environment variable(s) {', '.join(missing)}")
        model = _expand(self.provisioning(), env)
        model.pop("editable", None)  # provisioning-only key
        port = model["jsonData"].get("port")
        if port is not None:
            # The plugin's settings page saves the port as a number; send it the same way.
            if not str(port).isdigit():
                raise ValueError(f"datasource {self.name!r}: port {port!r} is not a number")
            model["jsonData"]["port"] = int(port)
        for key in self.bool_keys:
            text = str(model["jsonData"][key])
            if text.lower() not in _BOOLS:
                raise ValueError(f"datasource {self.name!r}: {key} {text!r} is not true or false")
            model["jsonData"][key] = _BOOLS[text.lower()]
        return model


_PLACEHOLDER = re.compile(r"\$\{(\w+)\}")
# What the plugin's strconv.ParseBool accepts, lower-cased.
_BOOLS = {"true": True, "t": True, "1": True, "false": False, "f": False, "0": False}


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)


def _expand(value: Any, env: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        return _PLACEHOLDER.sub(lambda m: env[m[1]], value)
    if isinstance(value, dict):
        return {k: _expand(v, env) for k, v in value.items()}
    return value


CLICKHOUSE = Datasource(
    uid="dw-clickhouse",
    name="distillwatch ClickHouse",
    type=CLICKHOUSE_PLUGIN,
    json_data={
        "host": "${CLICKHOUSE_HOST}",
        "port": "${CLICKHOUSE_PORT}",
        "protocol": "${CLICKHOUSE_PROTOCOL}",
        "defaultDatabase": "${CLICKHOUSE_DATABASE}",
        "username": "${CLICKHOUSE_USER}",
        # TLS to ClickHouse (native 9440, HTTPS 8443) and, for the http protocol, a path prefix in
        # front of ClickHouse (a proxy such as https://host/clickhouse): the plugin 4.x's settings.
        "secure": "${CLICKHOUSE_SECURE}",
        "path": "${CLICKHOUSE_PATH}",
    },
    secure_json_data={"password": "${CLICKHOUSE_PASSWORD}"},
    env_defaults={"CLICKHOUSE_SECURE": "false", "CLICKHOUSE_PATH": ""},
    bool_keys=("secure",),
)

PROMETHEUS = Datasource(
    uid="dw-prometheus",
    name="distillwatch Prometheus",
    type=PROMETHEUS_PLUGIN,
    json_data={"httpMethod": "POST", "timeInterval": "15s"},
    secure_json_data={},
    url="${PROMETHEUS_URL}",
)

DATASOURCES: tuple[Datasource, ...] = (CLICKHOUSE, PROMETHEUS)
