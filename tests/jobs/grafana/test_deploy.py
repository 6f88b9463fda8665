"""``distillwatch grafana deploy`` against a local stand-in of Grafana's API that checks every request."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from click.testing import CliRunner, Result

from jobs.cli import main
from jobs.grafana import build
from jobs.grafana.datasources import CLICKHOUSE, DATASOURCES, PROMETHEUS
from jobs.grafana.deploy import COMMIT_MESSAGE, TOKEN_ENV
from tests.jobs.grafana.grafana_standin import GrafanaStandIn

TOKEN = "glsa_test-token-0123456789"
PASSWORD = "ch-secret-pw"
ENV = {
    TOKEN_ENV: TOKEN,
    "CLICKHOUSE_HOST": "clickhouse.internal",
    "CLICKHOUSE_PORT": "8123",
    "CLICKHOUSE_PROTOCOL": "http",
    "CLICKHOUSE_DATABASE": "distillwatch",
    "CLICKHOUSE_USER": "grafana_ro",
    "CLICKHOUSE_PASSWORD": PASSWORD,
    "PROMETHEUS_URL": "http://prometheus:9090",
}
DASHBOARD_UIDS = sorted(str(m.uid) for m in build.dashboards())


@pytest.fixture
def grafana() -> Iterator[GrafanaStandIn]:
    with GrafanaStandIn(TOKEN) as standin:
        yield standin


def run_deploy(url: str, *args: str, env: dict[str, str] | None = None) -> Result:
    result = CliRunner().invoke(main, ["grafana", "deploy", "--url", url, *args], env=env or ENV)
    assert TOKEN not in result.output and PASSWORD not in result.output  # secrets never printed
    return result


def plan_lines(result: Result) -> dict[tuple[str, str], str]:
    """(kind, uid) -> action, from the plan the command prints."""
    lines = [line.split() for line in result.stdout.splitlines() if line.strip()]
    return {(parts[0], parts[1]): parts[2] for parts in lines}


def test_first_deploy_creates_datasources_folder_and_dashboards(grafana: GrafanaStandIn) -> None:
    result = run_deploy(grafana.url)
    assert result.exit_code == 0, result.output
    state = grafana.state
    assert all(r.authorization == f"Bearer {TOKEN}" for r in state.requests)
    writes = [(r.method, r.path) for r in state.writes()]
    assert writes == ([("POST", "/api/datasources")] * len(DATASOURCES) + [("POST", "/api/folders")]
                      + [("POST", "/api/dashboards/db")] * len(DASHBOARD_UIDS))
    bodies = [r.body for r in state.writes()]
    assert [b["uid"] for b in bodies[:2]] == [CLICKHOUSE.uid, PROMETHEUS.uid]
    clickhouse = bodies[0]
    assert clickhouse["type"] == "grafana-clickhouse-datasource"
    # CLICKHOUSE_SECURE and CLICKHOUSE_PATH unset: plain TCP, no path prefix.
    assert clickhouse["jsonData"] == {"host": "clickhouse.internal", "port": 8123, "protocol": "http",
                                      "defaultDatabase": "distillwatch", "username": "grafana_ro",
                                      "secure": False, "path": ""}
    assert clickhouse["secureJsonData"] == {"password": PASSWORD}
    assert bodies[1]["url"] == "http://prometheus:9090"
    assert bodies[2] == {"title": build.FOLDER, "uid": build.FOLDER}
    saved = bodies[3:]
    assert sorted(b["dashboard"]["uid"] for b in saved) == DASHBOARD_UIDS
    assert all(b["overwrite"] is True and b["folderUid"] == build.FOLDER and b["dashboard"]["id"] is None
               and b["message"] == COMMIT_MESSAGE for b in saved)
    # What Grafana received is exactly the checked-in JSON.
    for body in saved:
        uid = body["dashboard"]["uid"]
        checked_in = build.to_dict(next(m for m in build.dashboards() if m.uid == uid))
        assert {k: v for k, v in body["dashboard"].items() if k != "id"} == checked_in
    assert set(plan_lines(result).values()) == {"new"}


def test_second_deploy_is_a_no_op_with_the_same_uids(grafana: GrafanaStandIn) -> None:
    assert run_deploy(grafana.url).exit_code == 0
    first = {uid: saved["dashboard"]["id"] for uid, saved in grafana.state.dashboards.items()}
    grafana.state.requests.clear()
    result = run_deploy(grafana.url)
    assert result.exit_code == 0, result.output
    assert grafana.state.writes() == []
    assert set(plan_lines(result).values()) == {"unchanged"}
    assert {uid: saved["dashboard"]["id"] for uid, saved in grafana.state.dashboards.items()} == first
    assert all(saved["dashboard"]["version"] == 1 for saved in grafana.state.dashboards.values())


def test_a_dashboard_edited_in_grafana_is_overwritten_under_its_uid(grafana: GrafanaStandIn) -> None:
    assert run_deploy(grafana.url).exit_code == 0
    edited = grafana.state.dashboards["dw-overview"]["dashboard"]
    edited["title"] = "edited in the UI"
    grafana.state.datasources[PROMETHEUS.uid]["url"] = "http://old-prometheus:9090"
    grafana.state.requests.clear()
    result = run_deploy(grafana.url)
    assert result.exit_code == 0, result.output
    plan = plan_lines(result)
    assert plan[("dashboard", "dw-overview")] == "changed" and plan[("datasource", PROMETHEUS.uid)] == "changed"
    assert sum(action == "changed" for action in plan.values()) == 2
    writes = grafana.state.writes()
    assert [(r.method, r.path) for r in writes] == [("PUT", f"/api/datasources/uid/{PROMETHEUS.uid}"),
                                                    ("POST", "/api/dashboards/db")]
    assert writes[1].body["dashboard"]["uid"] == "dw-overview" and writes[1].body["overwrite"] is True
    saved = grafana.state.dashboards["dw-overview"]["dashboard"]
    assert saved["title"] == "Extraction overview" and saved["version"] == 2
    assert grafana.state.datasources[PROMETHEUS.uid]["url"] == "http://prometheus:9090"


def test_dry_run_prints_the_plan_and_sends_no_write(grafana: GrafanaStandIn) -> None:
    result = run_deploy(grafana.url, "--dry-run")
    assert result.exit_code == 0, result.output
    assert grafana.state.requests and grafana.state.writes() == []
    plan = plan_lines(result)
    expected: dict[tuple[str, str], str] = {("datasource", d.uid): "new" for d in DATASOURCES}
    expected[("folder", build.FOLDER)] = "new"
    expected.update({("dashboard", uid): "new" for uid in DASHBOARD_UIDS})
    assert plan == expected
    assert "dry run: nothing changed" in result.stderr
    # After a real deploy and one change on the server, a dry run names just that change.
    assert run_deploy(grafana.url).exit_code == 0
    grafana.state.dashboards["dw-campaigns"]["folderUid"] = "elsewhere"
    grafana.state.requests.clear()
    plan = plan_lines(run_deploy(grafana.url, "--dry-run"))
    assert [key for key, action in plan.items() if action != "unchanged"] == [("dashboard", "dw-campaigns")]
    assert grafana.state.writes() == []


def test_refusals_are_clear_and_never_show_the_token(grafana: GrafanaStandIn) -> None:
    no_token = run_deploy(grafana.url, env={k: v for k, v in ENV.items() if k != TOKEN_ENV} | {TOKEN_ENV: ""})
    assert no_token.exit_code != 0 and TOKEN_ENV in no_token.output
    no_env = run_deploy(grafana.url, env={TOKEN_ENV: TOKEN})
    assert no_env.exit_code != 0 and "CLICKHOUSE_HOST" in no_env.output and "--no-datasources" in no_env.output
    wrong = run_deploy(grafana.url, env=ENV | {TOKEN_ENV: "wrong-token"})
    assert wrong.exit_code != 0 and "401" in wrong.output and "wrong-token" not in wrong.output
    assert grafana.state.writes() == []
    only_dashboards = run_deploy(grafana.url, "--no-datasources", env={TOKEN_ENV: TOKEN})
    assert only_dashboards.exit_code == 0, only_dashboards.output
    assert grafana.state.datasources == {} and sorted(grafana.state.dashboards) == DASHBOARD_UIDS


def test_a_grafana_under_a_sub_path_is_reached_there(grafana: GrafanaStandIn) -> None:
    # The stand-in serves /api/ only: a sub-path must become /grafana/api/…, which it answers 404 to.
    result = run_deploy(grafana.url + "/grafana", "--dry-run")
    assert grafana.state.requests[0].path.startswith("/grafana/api/")
    assert result.exit_code == 0  # 404 on every GET: everything would be new
    assert set(plan_lines(result).values()) == {"new"}


def test_tls_and_path_prefix_come_from_the_environment(grafana: GrafanaStandIn) -> None:
    env = ENV | {"CLICKHOUSE_SECURE": "true", "CLICKHOUSE_PATH": "/clickhouse", "CLICKHOUSE_PORT": "8443"}
    result = run_deploy(grafana.url, env=env)
    assert result.exit_code == 0, result.output
    stored = grafana.state.datasources[CLICKHOUSE.uid]["jsonData"]
    assert stored["secure"] is True and stored["path"] == "/clickhouse" and stored["port"] == 8443
    # The same environment again: nothing to change.
    assert set(plan_lines(run_deploy(grafana.url, "--dry-run", env=env)).values()) == {"unchanged"}
    bad = run_deploy(grafana.url, env=ENV | {"CLICKHOUSE_SECURE": "yes"})
    assert bad.exit_code != 0 and "secure 'yes' is not true or false" in bad.output
