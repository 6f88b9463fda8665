"""The generated dashboards: fresh, deterministic, and sane as Grafana JSON (no server needed)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from jobs.cli import main
from jobs.grafana import build
from jobs.grafana.datasources import CLICKHOUSE, DATASOURCES, PROMETHEUS
from jobs.grafana.links import ACCOUNT, ACCOUNT_VAR, CAMPAIGNS, CLUSTER_VAR, OVERVIEW, PIPELINE
from jobs.grafana.sql_parts import BELOW_CAMPAIGN, campaign_min_score, is_campaign
from jobs.ranking import OUTPUT_TOKENS
from pipeline.alerting.rules import Rule, RulesError, load_rules, lower_bound
from pipeline.linking.cluster_outputs import RULE_CLUSTER
from schemas.tables import ROLLUPS
from tests.jobs.grafana.dashboard_json import panels, queries, referenced_variables, variable_names

GRID_WIDTH = 24
UNITS = {"reqps", "short", "s", "percent", "percentunit", "none", "bool", "bytes"}


@pytest.fixture(scope="module")
def built() -> dict[str, dict[str, Any]]:
    return {str(model.uid): build.to_dict(model) for model in build.dashboards()}


def test_checked_in_files_match_a_fresh_build() -> None:
    outdated = build.stale()
    assert not outdated, ("generated Grafana files are stale or missing: "
                          f"{', '.join(str(p.relative_to(build.REPO)) for p in outdated)}; "
                          "run `distillwatch grafana build`")


def test_build_is_deterministic_and_detects_a_stale_file(tmp_path: Path) -> None:
    first = build.write(tmp_path)
    assert {p.relative_to(tmp_path) for p in first} == set(build.rendered())
    assert build.write(tmp_path) == []  # a second build changes nothing
    target = tmp_path / "dashboards" / f"{OVERVIEW.uid}.json"
    target.write_text(target.read_text().replace("Extraction overview", "Hand edited"))
    assert build.stale(tmp_path) == [target]


def test_dashboard_and_panel_ids_are_unique(built: dict[str, dict[str, Any]]) -> None:
    assert set(built) == {OVERVIEW.uid, ACCOUNT.uid, CAMPAIGNS.uid, PIPELINE.uid}
    titles = [d["title"] for d in built.values()]
    assert len(set(titles)) == len(titles)
    for uid, dashboard in built.items():
        ids = [p["id"] for p in panels(dashboard)]
        assert len(ids) == len(set(ids)) and all(isinstance(i, int) for i in ids), uid
        for panel in panels(dashboard):
            refs = [t["refId"] for t in panel.get("targets", [])]
            assert len(refs) == len(set(refs)), (uid, panel["title"])


def test_every_variable_a_query_or_link_uses_is_defined(built: dict[str, dict[str, Any]]) -> None:
    for uid, dashboard in built.items():
        defined = variable_names(dashboard)
        for query in queries(dashboard):
            missing = referenced_variables(query.text) - defined
            assert not missing, f"{uid} {query.where}: undefined variable(s) {missing}"
    # The variables the cross-dashboard links fill exist where the links point.
    assert ACCOUNT_VAR in variable_names(built[ACCOUNT.uid])
    assert CLUSTER_VAR in variable_names(built[CAMPAIGNS.uid])


def test_panels_have_a_description_a_unit_and_fit_the_grid(built: dict[str, dict[str, Any]]) -> None:
    for uid, dashboard in built.items():
        occupied: set[tuple[int, int]] = set()
        for panel in panels(dashboard):
            where = f"{uid} panel {panel['title']!r}"
            assert panel.get("description"), where
            pos = panel["gridPos"]
            assert pos["x"] >= 0 and pos["x"] + pos["w"] <= GRID_WIDTH and 3 <= pos["h"] <= 12, where
            cells = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])}
            assert not cells & occupied, f"{where} overlaps another panel"
            occupied |= cells
            if panel["type"] in ("timeseries", "stat", "barchart"):
                assert panel["fieldConfig"]["defaults"].get("unit") in UNITS, where
            for override in panel.get("fieldConfig", {}).get("overrides", []):
                for prop in override["properties"]:
                    if prop["id"] == "unit":
                        assert prop["value"] in UNITS, where
        # Rows are full: the grid has no ragged right edge.
        rows: dict[int, int] = {}
        for panel in panels(dashboard):
            rows[panel["gridPos"]["y"]] = rows.get(panel["gridPos"]["y"], 0) + panel["gridPos"]["w"]
        assert all(width == GRID_WIDTH for width in rows.values()), (uid, rows)


def test_clickhouse_panels_never_scan_api_calls_and_use_the_plugin_macros(built: dict[str, dict[str, Any]]) -> None:
    rollups = set(ROLLUPS)
    read: set[str] = set()
    for dashboard in built.values():
        for query in queries(dashboard):
            if query.plugin != CLICKHOUSE.type:
                continue
            assert not re.search(r"\bapi_calls\b", query.text), f"{query.dashboard} {query.where} reads api_calls"
            read |= set(re.findall(r"\b(?:FROM|JOIN)\s+(\w+)", query.text)) & rollups
            # Panels follow the time range; only the current clusters (FINAL) are "now" whatever the range.
            if query.where.startswith("panel"):
                assert "$__timeFilter(" in query.text or "$__fromTime" in query.text or "FINAL" in query.text, \
                    f"{query.dashboard} {query.where} ignores the time range"
    assert read == rollups  # every rollup serves a panel


def test_datasources_are_referenced_by_the_provisioned_uids(built: dict[str, dict[str, Any]]) -> None:
    provisioned = yaml.safe_load(build.render_datasources())["datasources"]
    assert {(d["type"], d["uid"]) for d in provisioned} == {(d.type, d.uid) for d in DATASOURCES}
    used = set()
    for dashboard in built.values():
        for panel in panels(dashboard):
            used.add((panel["datasource"]["type"], panel["datasource"]["uid"]))
            for target in panel.get("targets", []):
                if "datasource" in target:
                    assert target["datasource"] == panel["datasource"]
    assert used == {(CLICKHOUSE.type, CLICKHOUSE.uid), (PROMETHEUS.type, PROMETHEUS.uid)}
    pipeline_types = {p["datasource"]["type"] for p in panels(built[PIPELINE.uid])}
    assert pipeline_types == {PROMETHEUS.type}
    clickhouse = next(d for d in provisioned if d["uid"] == CLICKHOUSE.uid)
    # Connection details come from the environment (Grafana expands ${VAR} when it reads the file).
    for key in ("host", "port", "protocol", "defaultDatabase", "secure", "path"):
        assert re.fullmatch(r"\$\{[A-Z_]+\}", str(clickhouse["jsonData"][key])), key
    provider = yaml.safe_load(build.render_providers())["providers"][0]
    assert provider["type"] == "file" and provider["folder"] == build.FOLDER


def test_account_and_cluster_cells_link_to_the_drill_downs_keeping_the_time_range(
        built: dict[str, dict[str, Any]]) -> None:
    linked: dict[str, int] = {}
    for uid, dashboard in built.items():
        for panel in panels(dashboard):
            for override in panel.get("fieldConfig", {}).get("overrides", []):
                for prop in override["properties"]:
                    if prop["id"] != "links":
                        continue
                    url = prop["value"][0]["url"]
                    column = override["matcher"]["options"]
                    expected = {"account_id": f"{ACCOUNT.path}?var-{ACCOUNT_VAR}=",
                                "cluster_id": f"{CAMPAIGNS.path}?var-{CLUSTER_VAR}="}[column]
                    assert url.startswith(expected + "${__value.raw}"), url
                    assert "${__url_time_range}" in url
                    linked[uid] = linked.get(uid, 0) + 1
    assert ACCOUNT.path == "/d/dw-account/account-drill-down"
    # Every ClickHouse dashboard shows accounts or clusters somewhere, each linked.
    assert set(linked) == {OVERVIEW.uid, ACCOUNT.uid, CAMPAIGNS.uid}


def test_checked_in_json_is_what_grafana_imports() -> None:
    for path in sorted((build.INFRA / "dashboards").glob("*.json")):
        model = json.loads(path.read_text())
        assert path.stem == model["uid"]
        assert model["schemaVersion"] >= 39 and model["tags"] == ["distillwatch"]
        assert "id" not in model  # Grafana assigns ids; a fixed one would clash across instances


def test_build_check_says_when_everything_is_up_to_date(tmp_path: Path) -> None:
    build.write(tmp_path)
    fresh = CliRunner().invoke(main, ["grafana", "build", "--check", "--out", str(tmp_path)])
    assert fresh.exit_code == 0 and fresh.stdout == f"dashboards are up to date ({len(build.rendered())} files)\n"
    (tmp_path / "dashboards" / f"{OVERVIEW.uid}.json").unlink()
    missing = CliRunner().invoke(main, ["grafana", "build", "--check", "--out", str(tmp_path)])
    assert missing.exit_code == 1 and "up to date" not in missing.output and "stale:" in missing.stderr


# An alias naming output tokens (output_tokens, `output tokens/s`, output_tokens_per_s).
_OUTPUT_ALIAS = re.compile(r"\bAS\s+`?output[ _]tokens", re.IGNORECASE)
# A sum of one token column alone, and the alias it gets.
_ONE_COLUMN_SUM = re.compile(r"sum\((?:\w+\.)?(completion|reasoning)_tokens\)[^,]*?\bAS\s+`?([\w /]+)`?")


def test_output_tokens_are_completion_plus_reasoning_everywhere(built: dict[str, dict[str, Any]]) -> None:
    outputs = 0
    for dashboard in built.values():
        for query in queries(dashboard):
            if query.plugin != CLICKHOUSE.type:
                continue
            where = f"{query.dashboard} {query.where}"
            if _OUTPUT_ALIAS.search(query.text):
                outputs += 1
                assert OUTPUT_TOKENS in query.text, f"{where}: output tokens not computed as {OUTPUT_TOKENS}"
            # A panel showing the parts apart names them: completion is not "output".
            for column, alias in _ONE_COLUMN_SUM.findall(query.text):
                assert column in alias, f"{where}: sum({column}_tokens) labelled {alias!r}"
    assert outputs >= 8  # the overview, account and campaign panels that show output tokens


def test_campaigns_are_clusters_at_the_cluster_rules_threshold(built: dict[str, dict[str, Any]]) -> None:
    assert campaign_min_score() == lower_bound(load_rules()[RULE_CLUSTER].rule, "score") == 60
    counted = {(q.dashboard, q.where.split("'")[1]) for d in built.values() for q in queries(d)
               if is_campaign() in q.text}
    assert {(OVERVIEW.uid, "Active campaigns"), (ACCOUNT.uid, "Campaigns"),
            (CAMPAIGNS.uid, "Output tokens harvested per campaign")} <= counted
    # Where clusters below the threshold are listed, they are labelled as such.
    labelled = {(q.dashboard, q.where.split("'")[1]) for d in built.values() for q in queries(d)
                if BELOW_CAMPAIGN in q.text}
    assert labelled == {(CAMPAIGNS.uid, "Active clusters"), (CAMPAIGNS.uid, "Members and their scores"),
                        (ACCOUNT.uid, "Cluster membership")}


def _rule(condition: str, **params: float) -> Rule:
    return Rule.model_validate({"name": "r", "subject": "cluster", "condition": condition, "params": params,
                                "severity": "warning", "action": "review", "annotations": {"summary": "s"}})


def test_lower_bound_reads_numbers_params_and_either_side() -> None:
    assert lower_bound(_rule("score >= 60 and size >= 3"), "size") == 3
    assert lower_bound(_rule("score >= floor and calls > 10", floor=55), "score") == 55
    assert lower_bound(_rule("50 <= score and score >= 65"), "score") == 65  # both must hold
    with pytest.raises(RulesError, match="no top-level 'score >= N' term"):
        lower_bound(_rule("score >= 60 or size >= 10"), "score")  # an or: no bound that always holds
