"""An allow-listed attacker is suppressed and counted: alerts row, /stats and distillwatch_alerts_suppressed_total."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.support.alerting import write_yaml
from tests.support.detect_step import harvest, make_batch
from tests.support.metrics import make_linking, make_worker, scrape, value


def test_an_allow_listed_attacker_is_recorded_counted_and_not_paged(tmp_path: Path) -> None:
    allow = write_yaml(tmp_path / "allow.yaml", {"version": 1, "entries": [
        {"id": "partner-x", "account_id": "org-x", "reason": "partner evaluation", "owner": "bd",
         "expires": "2099-12-31", "effect": "exempt"}]})
    linking = make_linking({"cluster_alerts_suppressed": {"cluster_extraction:false_positive": 2}})
    step, metrics, effects = make_worker(allowlist=allow, linking=linking)
    asyncio.run(step.handle(make_batch(effects, harvest(), drain=True)))
    [alerts] = [cols for kind, (table, cols) in ((k, v) for k, v in effects if k == "clickhouse")
                if table == "alerts"]
    assert alerts["suppressed_by"] == ["allowlist:partner-x"] and alerts["account_id"] == ["org-x"]
    assert step.stats.as_dict()["alerts_suppressed"] == {"extraction_score_high": {"allowlist": 1}}
    samples = scrape(metrics)
    name = "distillwatch_alerts_suppressed_total"
    assert value(samples, name, rule="extraction_score_high", reason="allowlist") == 1
    assert value(samples, name, rule="cluster_extraction", reason="false_positive") == 2
