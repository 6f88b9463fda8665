"""The linking process on the embedded broker: checkpoint, SIGTERM, restore, drain, bounded exit.

Two runs of ``python -m pipeline.linking.process`` (child processes, settings from DW_*):
the first links fleet-0..4 and early-x, checkpoints and is stopped with SIGTERM; the second
(bounded) can only link fleet-5..9 to them, and alert only the new members, if the stage
state and the alert state came back from the checkpoint.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from jobs.embedded_broker import EmbeddedBroker
from pipeline.linking.clusters import cluster_id
from pipeline.settings import load_settings
from pipeline.topics import ensure_topics
from tests.support.link_process import (
    FLEET_A,
    FLEET_B,
    GROUP,
    PARTITIONS,
    TOPICS,
    Results,
    alerted,
    child_env,
    linking_process,
    paged,
    publish,
)

pytestmark = [pytest.mark.slow, pytest.mark.kafka]


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
