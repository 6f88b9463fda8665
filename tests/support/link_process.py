"""The linking process as a child on a real broker: its environment, the detect batches it reads, its results."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from kafka import KafkaConsumer, TopicPartition

from pipeline.linking.config import load_linking_config
from pipeline.linking.producer import LinkProducer
from pipeline.linking.publish import LinkPublisher
from pipeline.linking.results import LinkResult, decode_result
from pipeline.linking.topics import LinkTopics
from tests.support.alerting import rules_doc, write_yaml
from tests.support.link_builders import make_batch

ROOT = Path(__file__).resolve().parents[2]
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
