"""A small Faust worker with only the linking stages, for test_agents_broker (run as a child process).

    python -m tests.pipeline.linking.link_worker BOOTSTRAP PHASE OUT_JSONL DATA_DIR

Phase ``first`` publishes fleet-0..4 (card pf_A) and early-x + fleet-0 (card pf_B), waits
until stage B has seen them and Faust has committed, then stops. Phase ``second``
(a restart of the same app id) publishes fleet-5..9 (card pf_A) as the drain batch and
stops once ``drain_complete`` is set. Stage B's rows and alerts are appended to
OUT_JSONL, one JSON object per write, tagged with the phase.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import faust
import numpy as np
import orjson

from pipeline.alerting.alert_rows import AlertRows
from pipeline.alerting.engine import AlertSetup
from pipeline.alerting.rules import load_rules
from pipeline.alerting.transitions import AlertTransition
from pipeline.linking.agents import LinkTopics, register_linking
from pipeline.linking.cluster_outputs import ClusterRows
from pipeline.linking.config import load_linking_config
from tests.pipeline.alerting.support import rules_doc, write_yaml
from tests.pipeline.linking.builders import make_batch

APP_ID = "dw-link-test"
TOPICS = LinkTopics("link-test-observations", "link-test-edges")
PARTITIONS = 4
SCORE = 50.0


class JsonlSink:
    def __init__(self, path: str, phase: str) -> None:
        self.path = path
        self.phase = phase

    def write(self, rows: ClusterRows, alerts: AlertRows | None, transitions: Sequence[AlertTransition] = ()) -> None:
        record = {"phase": self.phase, "rows": rows.__dict__,
                  "alerts": [] if alerts is None else list(alerts.account_id),
                  "pages": [t.labels["account_id"] for t in transitions]}
        with open(self.path, "ab") as f:
            f.write(orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")


def batch_for(phase: str) -> tuple[list[str], list[str]]:
    if phase == "first":
        return [*(f"fleet-{i}" for i in range(5)), "early-x", "fleet-0"], [*(["pf_A"] * 5), "pf_B", "pf_B"]
    return [f"fleet-{i}" for i in range(5, 10)], ["pf_A"] * 5


def main(bootstrap: str, phase: str, out: str, data_dir: str) -> None:
    app = faust.App(
        APP_ID, broker=f"kafka://{bootstrap}", store="memory://", datadir=data_dir, web_enabled=False,
        topic_partitions=PARTITIONS, broker_rebalance_timeout=4, broker_session_timeout=10,
        broker_heartbeat_interval=1, producer_compression_type=None, broker_commit_interval=0.5,
        # Tansu 0.6 answers ListOffsets(latest) with the last *batch's* base offset + 1, so Faust's
        # recovery stops short of a final multi-record batch; one record per batch avoids it.
        producer_max_batch_size=1,
    )
    # One batch per phase, minutes of event time apart: the cluster rule fires at the qualifying time.
    rules = rules_doc()
    rules["rules"][1]["for"] = "0m"
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    alerting = AlertSetup(load_rules(write_yaml(Path(data_dir) / "rules.yaml", rules)))
    linking = register_linking(app, load_linking_config(), JsonlSink(out, phase),
                               observation_partitions=PARTITIONS, topics=TOPICS, source_id=f"detect-{phase}",
                               alerting=alerting)

    @app.task
    async def drive() -> None:
        accounts, cards = batch_for(phase)
        ts = 1_770_888_600_000 + (0 if phase == "first" else 3_600_000)
        batch = make_batch(accounts, pay=cards, ts=[ts + i for i in range(len(accounts))])
        names = sorted(set(accounts))
        scores = dict.fromkeys(names, SCORE)
        prepared = linking.publisher.prepare(batch, names, np.full(len(names), ts // 1000 // 60 * 60),
                                             np.full(len(names), SCORE), scores)
        await linking.publisher.send(prepared, drain=phase == "second")
        if phase == "first":
            while linking.stats.account_updates < len(names) or linking.stats.clusters < 1:
                await asyncio.sleep(0.2)
            await asyncio.sleep(3)  # a few commit intervals: offsets and changelogs reach Kafka
        else:
            await linking.drain_complete.wait()
        print(f"{phase}: done {linking.as_dict()}", flush=True)
        os.kill(os.getpid(), signal.SIGTERM)

    sys.argv = [sys.argv[0], "worker", "--loglevel", "warn"]
    app.main()


if __name__ == "__main__":
    main(*sys.argv[1:5])
