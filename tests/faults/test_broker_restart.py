"""Apache Kafka stopped and restarted under a running worker: the worker rides through, nothing changes.

Only on Apache Kafka (``make test-kafka``): the restarted broker has its data directory,
so topics, the state topic and committed offsets survive. Tansu is memory-only (a
restart loses every topic), so there the test is skipped (tests/conftest.py).

The input is the fault harness's (poison, resent copies, late events); the final
aggregates must equal the plain-Python expected counters, and the rejects and raw
events must be exactly those of the input, as in tests/faults/test_faults.py.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobs.apache_kafka import ApacheKafkaBroker
from tests.faults.harness import (
    N_VALID,
    build_input,
    counters_of,
    dead_letter_count,
    expected_counters,
    finish,
    kill_leftover_workers,
    produce,
    produce_tombstone,
    read_results,
    run_settings,
    start_worker,
    wait_for,
)
from tests.support.clickhouse_faults import FAULT_CLICKHOUSE_SLOW_FILE

pytestmark = [pytest.mark.slow, pytest.mark.kafka, pytest.mark.clickhouse, pytest.mark.apache_kafka]

DOWN_S = 3.0  # the broker stays away this long, on top of its shutdown and start (~5 s together)


@pytest.fixture
def restartable_broker(tmp_path: Path) -> Iterator[ApacheKafkaBroker]:
    # Its own broker, not the session's: this test stops it.
    with ApacheKafkaBroker(data_dir=tmp_path / "kafka", log_path=tmp_path / "kafka.log") as broker:
        yield broker
        kill_leftover_workers()


def test_broker_restart_mid_stream_changes_nothing(restartable_broker: ApacheKafkaBroker, tmp_path: Path) -> None:
    broker = restartable_broker
    fault_input = build_input()
    # Small batches and frequent checkpoints: when the broker goes, writes and commits are in flight.
    settings = run_settings(broker.bootstrap, tmp_path / "run", batch_max_events=100, checkpoint_interval_s=0.3)
    produce(settings, fault_input.lines)
    produce_tombstone(settings, b"org-0")  # a null value: dead-lettered like the poison
    total = len(fault_input.lines) + 1

    # A slow ClickHouse keeps the worker mid-stream while the broker is away.
    slow = tmp_path / "clickhouse-slow"
    slow.write_text("0.05")
    worker = start_worker(settings, bounded=True, name="worker", env={FAULT_CLICKHOUSE_SLOW_FILE: str(slow)})
    wait_for(worker, lambda s: s["events_in"] >= total // 4 and s["batches_committed"] >= 3, 240,
             "a quarter of the input processed")
    broker.restart(down_s=DOWN_S)
    assert worker.proc.poll() is None, f"the worker died with the broker:\n{worker.log_tail(40)}"
    stats = wait_for(worker, lambda s: True, 30, "stats after the broker restart")
    assert stats["events_in"] < total, "the worker finished before the broker came back: not mid-stream"
    slow.unlink()
    finish(worker, timeout_s=300)  # the rest of the input, through the restarted broker

    assert len(broker.start_seconds) == 2
    got = read_results(settings.data_dir)
    assert counters_of(got) == expected_counters(fault_input.lines)
    assert got.raw_events == got.raw_unique == N_VALID + fault_input.stale
    reasons = Counter(got.rejected.values())
    want = Counter(reason for _, reason in fault_input.poison) + Counter(
        {"invalid_json": 1, "duplicate": fault_input.resent})  # + the null value
    assert reasons == want
    # At least once: a batch whose dead-letter write was acknowledged but not committed may be dead-lettered again.
    assert dead_letter_count(settings) >= len(fault_input.poison) + 1
