"""Fault injection on the real parts: each run's final aggregates must equal the exact expected values.

One input (tests/faults/harness.py: valid events, poison, resent copies, late
events) is run uninterrupted once (``reference``) and then through each fault.
Every run is compared with plain-Python expected counters per account and
minute, and with the reference run column by column (signatures_1m FINAL,
alerts FINAL, rejected_events FINAL): a fault may change nothing.
"""

from __future__ import annotations

import os
import re
import signal
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from jobs.embedded_broker import EmbeddedBroker, free_port
from pipeline.settings import Settings
from pipeline.sources.kafka_batches import source_group
from pipeline.topics import admin_client
from tests.faults.harness import (
    N_VALID,
    FaultInput,
    Results,
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
    sql,
    start_worker,
    wait_for,
)
from tests.support.clickhouse_faults import FAULT_CLICKHOUSE_DOWN_FILE, FAULT_CLICKHOUSE_SLOW_FILE

pytestmark = [pytest.mark.slow, pytest.mark.kafka, pytest.mark.clickhouse]


@dataclass(frozen=True)
class Reference:
    settings: Settings
    results: Results
    dead_letters: int


@pytest.fixture(scope="module")
def broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as b:
        yield b
        kill_leftover_workers()


@pytest.fixture(autouse=True)
def no_leftover_workers() -> Iterator[None]:
    yield
    kill_leftover_workers()


@pytest.fixture(scope="module")
def fault_input() -> FaultInput:
    return build_input()


def _produce_all(settings: Settings, fault_input: FaultInput) -> None:
    produce(settings, fault_input.lines)
    produce_tombstone(settings, b"org-0")  # a null value: bad input too


@pytest.fixture(scope="module")
def reference(broker: EmbeddedBroker, fault_input: FaultInput, tmp_path_factory: pytest.TempPathFactory
              ) -> Reference:
    """The input through one uninterrupted bounded run with default batching."""
    settings = run_settings(broker.bootstrap, tmp_path_factory.mktemp("reference"))
    _produce_all(settings, fault_input)
    finish(start_worker(settings, bounded=True, name="worker"))
    return Reference(settings, read_results(settings.data_dir), dead_letter_count(settings))


def _assert_same_as_reference(got: Results, reference: Reference, fault_input: FaultInput) -> None:
    assert counters_of(got) == expected_counters(fault_input.lines)
    assert got.signatures.keys() == reference.results.signatures.keys()
    diff = [k for k, row in got.signatures.items() if row != reference.results.signatures[k]]
    assert not diff, f"{len(diff)} frames differ, e.g. {diff[0]}: {got.signatures[diff[0]]} != " \
                     f"{reference.results.signatures[diff[0]]}"
    assert got.alerts == reference.results.alerts
    assert got.rejected == reference.results.rejected
    assert got.raw_events == got.raw_unique == N_VALID + fault_input.stale


def test_poison_messages_are_dead_lettered_with_reasons_and_change_nothing_else(
        reference: Reference, fault_input: FaultInput) -> None:
    got = reference.results
    assert counters_of(got) == expected_counters(fault_input.lines)
    reasons = Counter(r for r in got.rejected.values() if r != "duplicate")
    want = Counter(reason for _, reason in fault_input.poison) + Counter({"invalid_json": 1})  # + the null value
    assert reasons == want
    assert reference.dead_letters == len(fault_input.poison) + 1
    assert got.raw_events == got.raw_unique == N_VALID + fault_input.stale


def test_resent_events_are_counted_once(reference: Reference, fault_input: FaultInput) -> None:
    got = reference.results
    assert sum(r == "duplicate" for r in got.rejected.values()) == fault_input.resent
    assert sum(c["calls"] for c in counters_of(got).values()) == N_VALID  # the stale ones are late
    assert counters_of(got) == expected_counters(fault_input.lines)


def test_kill_9_mid_stream_and_restart_equals_an_uninterrupted_run(
        broker: EmbeddedBroker, fault_input: FaultInput, reference: Reference, tmp_path: Path) -> None:
    # Small batches: many commits, and at any moment some written batches not yet committed.
    settings = run_settings(broker.bootstrap, tmp_path / "run", batch_max_events=100, checkpoint_interval_s=0.3)
    _produce_all(settings, fault_input)
    first = start_worker(settings, bounded=False, name="worker-1")
    total = len(fault_input.lines) + 1
    stats = wait_for(first, lambda s: s["events_in"] >= total // 3 and s["batches_committed"] >= 5, 240,
                     "a third of the input processed")
    os.kill(first.proc.pid, signal.SIGKILL)
    first.wait(30)
    assert first.proc.returncode == -signal.SIGKILL
    assert stats["events_in"] < total, "the worker finished before it could be killed mid-stream"

    second = start_worker(settings, bounded=True, name="worker-2")
    finish(second)
    log = second.log_path.read_text(errors="replace")
    assert "restored" in log and "resuming at offset" in log, "the second worker did not restore the state"
    _assert_same_as_reference(read_results(settings.data_dir), reference, fault_input)


def test_clickhouse_down_applies_back_pressure_then_loses_nothing(
        broker: EmbeddedBroker, fault_input: FaultInput, reference: Reference, tmp_path: Path) -> None:
    batch = 500
    # A short stall threshold: back-pressure must not be mistaken for a stalled partition.
    settings = run_settings(broker.bootstrap, tmp_path / "run", batch_max_events=batch, stall_after_s=2.0)
    _produce_all(settings, fault_input)
    down = tmp_path / "clickhouse-down"
    down.touch()
    worker = start_worker(settings, bounded=True, name="worker", env={FAULT_CLICKHOUSE_DOWN_FILE: str(down)})
    stats = wait_for(worker, lambda s: s["clickhouse_retries"] >= 3, 240, "ClickHouse retries")
    assert stats["clickhouse_available"] is False
    time.sleep(1.0)  # the source has had time to fill the detect loop's queue and stop
    held = worker.stats()
    assert held is not None
    # Nothing got past ClickHouse, and the source stopped: at most the batch being written,
    # the one detected behind it (the detect step's overlap_writes), two in the queue and
    # one waiting to enter it.
    assert held["batches"] == held["batches_committed"] == 0
    assert 0 < held["source_fetched_events"] <= 5 * batch < len(fault_input.lines)
    lagging = wait_for(worker, lambda s: sum(s["partition_lag"].values()) > 0 and s["batches"] == 0, 60,
                       "partition lag while held")
    time.sleep(3.0)  # longer than stall_after_s: still back-pressure, not a stall
    lagging = worker.stats()
    assert lagging is not None and lagging["stalled_partitions"] == [] and lagging["batches"] == 0
    down.unlink()
    wait_for(worker, lambda s: s["clickhouse_available"] and s["batches_committed"] > 0, 120, "recovery")
    finish(worker)
    _assert_same_as_reference(read_results(settings.data_dir), reference, fault_input)


def test_a_second_worker_joining_takes_over_partitions_with_their_state(
        broker: EmbeddedBroker, fault_input: FaultInput, reference: Reference, tmp_path: Path) -> None:
    # Two workers of one group, each with its own embedded ClickHouse: together they must hold
    # every frame once (a row both wrote must be identical: on one ClickHouse it collapses),
    # and the union must equal the uninterrupted run. A slow ClickHouse keeps the first worker
    # mid-stream until the second has taken partitions over.
    first_settings = run_settings(broker.bootstrap, tmp_path / "a", batch_max_events=50)
    second_settings = first_settings.model_copy(update={"data_dir": tmp_path / "b", "web_port": free_port()})
    _produce_all(first_settings, fault_input)
    slow = tmp_path / "clickhouse-slow"
    slow.write_text("0.15")
    first = start_worker(first_settings, bounded=True, name="worker", env={FAULT_CLICKHOUSE_SLOW_FILE: str(slow)})
    # A backlog is read a partition at a time (the fetcher drains one partition's records before the
    # next). The round-robin assignor gives the second worker the even or the odd partitions, so once
    # the first has committed in one of each, whichever set moves carries state.
    wait_for(first, lambda s: s["batches_committed"] >= 2 and _committed_in_both_parities(first_settings), 240,
             "the first worker's checkpoints in an even and an odd partition")
    second = start_worker(second_settings, bounded=True, name="worker")
    wait_for(second, lambda s: bool(s["partitions"]), 240, "partitions for the second worker")
    slow.unlink()
    finish(first)
    finish(second)
    restored = sum(int(n) for n in re.findall(r"restored (\d+) entities", second.log_path.read_text()))
    assert restored > 0, "no partition moved to the second worker with its state"
    assert "dropped the state of partitions" in first.log_path.read_text()

    a, b = read_results(first_settings.data_dir), read_results(second_settings.data_dir)
    for both in a.signatures.keys() & b.signatures.keys():
        assert a.signatures[both] == b.signatures[both]
    raw = len({*_raw_keys(first_settings), *_raw_keys(second_settings)})
    union = Results({**a.signatures, **b.signatures}, {**a.rejected, **b.rejected}, raw, raw,
                    sorted({r["alert_id"]: r for r in a.alerts + b.alerts}.values(), key=lambda r: r["alert_id"]))
    _assert_same_as_reference(union, reference, fault_input)


def _committed_in_both_parities(settings: Settings) -> bool:
    admin = admin_client(settings.kafka_bootstrap)
    try:
        group = source_group(settings.consumer_group)
        committed = admin.list_group_offsets(group).get(group, {})
    finally:
        admin.close()
    moved = {tp.partition for tp, meta in committed.items() if tp.topic == settings.topic_events and meta.offset > 0}
    return {p % 2 for p in moved} == {0, 1}


def _raw_keys(settings: Settings) -> list[str]:
    return [r["k"] for r in sql(settings.data_dir, "SELECT concat(account_id, '|', toString(ts), '|', event_id) AS k "
                                                   "FROM api_calls FINAL")]
