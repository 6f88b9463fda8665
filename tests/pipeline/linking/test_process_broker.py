"""The linking process on the embedded broker: checkpoint, SIGTERM, restore, drain, bounded exit.

Two runs of ``python -m pipeline.linking.process`` (child processes, settings from DW_*):
the first links fleet-0..4 and early-x, checkpoints and is stopped with SIGTERM; the second
(bounded) can only link fleet-5..9 to them, and alert only the new members, if the stage
state and the alert state came back from the checkpoint.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from kafka import KafkaConsumer, TopicPartition

from jobs.embedded_broker import EmbeddedBroker
from pipeline.linking.clusters import cluster_id
from pipeline.linking.config import load_linking_config
from pipeline.linking.producer import LinkProducer
from pipeline.linking.publish import LinkPublisher
from pipeline.linking.results import LinkResult, decode_result
from pipeline.linking.topics import LinkTopics
from pipeline.settings import load_settings
from pipeline.topics import ensure_topics
from tests.pipeline.alerting.support import rules_doc, write_yaml
from tests.pipeline.linking.builders import make_batch

pytestmark = [pytest.mark.slow, pytest.mark.kafka]
ROOT = Path(__file__).resolve().parents[3]
GROUP = "linktest"
TOPICS = LinkTopics.for_group(GROUP)
PARTITIONS = 4
SCORE = 50.0
WAIT_S = 120.0
FLEET_A = [f"fleet-{i}" for i in range(5)]
FLEET_B = [f"fleet-{i}" for i in range(5, 10)]


class Results:
    """Every message of the results topic so far, read from the start."""

    def __init__(self, bootstrap: str) -> None:
        self.consumer = KafkaConsumer(bootstrap_servers=[bootstrap], enable_auto_commit=False, group_id=None)
        tp = TopicPartition(TOPICS.results, 0)
        self.consumer.assign([tp])
        self.consumer.seek_to_beginning(tp)
        self.all: list[LinkResult] = []

    def poll(self) -> None:
        for records in self.consumer.poll(timeout_ms=500).values():
            self.all += [decode_result(r.value) for r in records]

    def wait_for(self, what: str, done: Callable[[LinkResult], bool], since: int = 0) -> LinkResult:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            self.poll()
            found = [r for r in self.all[since:] if done(r)]
            if found:
                return found[-1]
        raise AssertionError(f"no result {what} within {WAIT_S:.0f}s; last stats {self.all[-1:]}")


def child_env(bootstrap: str, tmp_path: Path) -> dict[str, str]:
    rules = rules_doc()
    rules["rules"][1]["for"] = "0m"  # one batch per phase: the cluster rule fires at once
    env = {k: v for k, v in os.environ.items() if not k.startswith("DW_")}
    return {**env, "DW_KAFKA_BOOTSTRAP": bootstrap, "DW_CONSUMER_GROUP": GROUP, "DW_PARTITIONS": str(PARTITIONS),
            "DW_CHECKPOINT_INTERVAL_S": "0.5", "DW_DATA_DIR": str(tmp_path / "data"),
            "DW_ALERT_RULES": str(write_yaml(tmp_path / "rules.yaml", rules))}


@contextmanager
def linking_process(env: dict[str, str], log_path: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.linking.process", *args], cwd=ROOT, env=env,
                                stdout=log, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def publish(bootstrap: str, phase: str, accounts: list[str], cards: list[str], *, drain: bool) -> int:
    """One detect batch of ``accounts`` paying with ``cards``, from source detect-<phase>; messages sent."""
    async def send() -> int:
        producer = LinkProducer([bootstrap])
        await producer.start()
        try:
            publisher = LinkPublisher(load_linking_config(), producer.send, observations_topic=TOPICS.observations,
                                      edges_topic=TOPICS.edges, partitions=PARTITIONS, source_id=f"detect-{phase}")
            ts = 1_770_888_600_000 + (0 if phase == "first" else 3_600_000)
            batch = make_batch(accounts, pay=cards, ts=[ts + i for i in range(len(accounts))])
            names = sorted(set(accounts))
            prepared = publisher.prepare(batch, names, np.full(len(names), ts // 1000 // 60 * 60),
                                         np.full(len(names), SCORE), dict.fromkeys(names, SCORE))
            await publisher.send(prepared, drain=drain)
            return publisher.sent_messages
        finally:
            await producer.stop()

    return asyncio.run(send())


def alerted(results: list[LinkResult]) -> list[str]:
    return sorted(a for r in results for a in r.alerts.account_id)


def paged(results: list[LinkResult]) -> list[str]:
    return sorted(t.labels["account_id"] for r in results for t in r.transitions)


def test_process_checkpoints_stops_on_sigterm_restores_and_exits_after_the_drain(tmp_path: Path) -> None:
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as broker:
        env = child_env(broker.bootstrap, tmp_path)
        settings = load_settings(kafka_bootstrap=broker.bootstrap, consumer_group=GROUP, partitions=PARTITIONS)
        ensure_topics(settings, extra=TOPICS.partitions(PARTITIONS))
        results = Results(broker.bootstrap)
        log_path = tmp_path / "linking.log"

        # Phase 1: live linking, checkpointed, then SIGTERM.
        with linking_process(env, log_path) as proc:
            publish(broker.bootstrap, "first", [*FLEET_A, "early-x", "fleet-0"], ["pf_A"] * 5 + ["pf_B"] * 2,
                    drain=False)
            results.wait_for("covering phase 1 in a checkpoint", lambda r: (
                r.stats.get("account_updates") == 6 and r.stats.get("clusters") == 1
                and r.stats.get("checkpoint_generation", 0) >= 1 and r.stats.get("uncheckpointed_messages") == 0))
            stopping = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0, log_path.read_text()[-3000:]
            stop_s = time.monotonic() - stopping
        results.poll()
        first = list(results.all)

        # Phase 2: a bounded restart drains detect-second and exits by itself.
        started = time.monotonic()
        with linking_process(env, log_path, "--bounded", "--drain-source", "detect-second") as proc:
            sent = publish(broker.bootstrap, "second", FLEET_B, ["pf_A"] * 5, drain=True)
            assert proc.wait(timeout=180) == 0, log_path.read_text()[-3000:]
            second_s = time.monotonic() - started
        results.wait_for("naming detect-second drained", lambda r: r.drained_sources == ["detect-second"],
                         since=len(first))
        results.wait_for("with the final stats", lambda r: r.stats.get("sources_drained") == ["detect-second"]
                         and r.is_empty(), since=len(first))
        second = results.all[len(first):]

    last: dict[str, tuple[int, list[str]]] = {}
    for r in results.all:
        for cid, active, members in zip(r.rows.cluster_id, r.rows.active, r.rows.account_ids, strict=True):
            last[cid] = (active, members)
    everyone = sorted(["early-x", *FLEET_A, *FLEET_B])
    assert [members for flag, members in last.values() if flag] == [everyone]
    # Phase 1 may link the pf_A pairs and the pf_B pair in one fetch or two: compare member sets there.
    assert set(alerted(first)) == {"early-x", *FLEET_A} and set(paged(first)) == set(alerted(first))
    # After the restart only the new members alert, each once: the alert state came from the checkpoint.
    assert alerted(second) == FLEET_B and paged(second) == FLEET_B
    assert {a: c for r in second for a, c in r.cluster_of.items() if a in FLEET_B} == \
        dict.fromkeys(FLEET_B, cluster_id(everyone))
    # Restored, not re-read: the second run read exactly what phase 2 published.
    final = second[-1].stats
    assert final["restored_generation"] >= 1 and final["checkpoint_generation"] > final["restored_generation"]
    assert final["read_messages"] == sent
    assert stop_s < 15, f"SIGTERM took {stop_s:.1f}s"
    print(f"SIGTERM stop {stop_s:.2f}s; bounded restart to exit {second_s:.1f}s; "
          f"rss {final['rss_mb']} MB (peak {final['peak_rss_mb']} MB); checkpoint {final['last_checkpoint_s']}s "
          f"{final['last_checkpoint_bytes']} bytes")


def test_sigterm_with_the_broker_gone_ends_the_process_before_the_supervisors_kill(tmp_path: Path) -> None:
    """Every shutdown step is bounded (STOP_STEP_S): without a broker aiokafka's stop alone waits out its
    request timeouts, and the process used to outlive the supervisor's 30 s SIGTERM-to-SIGKILL window."""
    log_path = tmp_path / "linking.log"
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as broker:
        env = child_env(broker.bootstrap, tmp_path)
        settings = load_settings(kafka_bootstrap=broker.bootstrap, consumer_group=GROUP, partitions=PARTITIONS)
        ensure_topics(settings, extra=TOPICS.partitions(PARTITIONS))
        results = Results(broker.bootstrap)
        proc_cm = linking_process(env, log_path)
        proc = proc_cm.__enter__()
        publish(broker.bootstrap, "first", FLEET_A, ["pf_A"] * 5, drain=False)
        results.wait_for("from the active process", lambda r: r.stats.get("account_updates") == 5)
        results.consumer.close()
    try:  # the broker is gone now
        stopping = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log_path.read_text()[-3000:]
        assert time.monotonic() - stopping < 30, log_path.read_text()[-3000:]
    finally:
        proc_cm.__exit__(None, None, None)
