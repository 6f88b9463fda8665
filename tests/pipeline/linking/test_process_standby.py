"""One active linking process per consumer group, on the embedded broker.

Three ``python -m pipeline.linking.process`` children in one group: the first owns every
partition, the others stay standbys (no results from them), a third joining does not move
the partitions, and when the owner goes (SIGTERM: it leaves the group; SIGKILL: its session
expires) a standby restores the checkpoint and links phase 2 to phase 1's clusters,
alerting only the new members. Killed before a checkpoint covers its input, the owner's
successor re-sends exactly that input's results (at-least-once).
"""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

import pytest

from jobs.embedded_broker import EmbeddedBroker
from pipeline.linking.results import LinkResult
from pipeline.settings import load_settings
from pipeline.topics import ensure_topics
from tests.support.link_process import (
    FLEET_A,
    FLEET_B,
    GROUP,
    PARTITIONS,
    TOPICS,
    WAIT_S,
    Results,
    alerted,
    child_env,
    linking_process,
    paged,
    publish,
)

pytestmark = [pytest.mark.slow, pytest.mark.kafka]
ACTIVE = "linking: active, restored generation"
STANDBY = "linking: standby"


def wait_log(path: Path, pattern: str, proc: subprocess.Popen[bytes]) -> re.Match[str]:
    """The first line of ``path`` matching ``pattern``, once written."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        found = re.search(pattern, path.read_text() if path.exists() else "")
        if found:
            return found
        assert proc.poll() is None, f"exited {proc.returncode}: {path.read_text()[-3000:]}"
        time.sleep(0.1)
    raise AssertionError(f"no {pattern!r} in {path} within {WAIT_S:.0f}s: {path.read_text()[-3000:]}")


def wait_results(results: Results, what: str, done: Callable[[list[LinkResult]], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        results.poll()
        if done(results.all):
            return
    raise AssertionError(f"no results {what} within {WAIT_S:.0f}s; last {results.all[-1:]}")


def pids(results: list[LinkResult]) -> set[object]:
    return {r.stats.get("pid") for r in results}


Procs = dict[str, subprocess.Popen[bytes]]


def owner_and_standby(bootstrap: str, env: dict[str, str], logs: dict[str, Path], stack: ExitStack) -> Procs:
    """Topics made; ``a`` active (nothing restored), then ``b`` a standby the owner has seen join;
    then phase 1 published."""
    settings = load_settings(kafka_bootstrap=bootstrap, consumer_group=GROUP, partitions=PARTITIONS)
    ensure_topics(settings, extra=TOPICS.partitions(PARTITIONS))
    procs = {"a": stack.enter_context(linking_process(env, logs["a"]))}
    wait_log(logs["a"], ACTIVE + " 0", procs["a"])
    procs["b"] = stack.enter_context(linking_process(env, logs["b"]))
    wait_log(logs["b"], STANDBY, procs["b"])
    wait_log(logs["a"], r"still active after a rebalance, generation \d+ \(.* 2 members\)", procs["a"])
    publish(bootstrap, "first", [*FLEET_A, "early-x", "fleet-0"], ["pf_A"] * 5 + ["pf_B"] * 2, drain=False)
    return procs


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_one_process_links_standbys_wait_and_one_takes_over_from_the_checkpoint(
        tmp_path: Path, sig: signal.Signals) -> None:
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as broker, ExitStack() as stack:
        env = child_env(broker.bootstrap, tmp_path)
        results = Results(broker.bootstrap)
        logs = {name: tmp_path / f"linking-{name}.log" for name in "abc"}
        procs = owner_and_standby(broker.bootstrap, env, logs, stack)
        a, b = procs["a"], procs["b"]
        # Phase 1, linked by the owner alone and covered by a checkpoint.
        results.wait_for("covering phase 1 in a checkpoint", lambda r: (
            r.stats.get("account_updates") == 6 and r.stats.get("clusters") == 1
            and r.stats.get("checkpoint_generation", 0) >= 1 and r.stats.get("uncheckpointed_messages") == 0))

        # A third member joins: the partitions stay where they are (no restore, no standby line).
        c = stack.enter_context(linking_process(env, logs["c"]))
        wait_log(logs["c"], STANDBY, c)
        wait_log(logs["a"], r"still active after a rebalance, generation \d+ \(.* 3 members\)", a)
        text = logs["a"].read_text()
        assert text.count("linking: active") == 1 and STANDBY not in text, text[-3000:]
        results.poll()
        before = list(results.all)
        assert pids(before) == {a.pid}

        # The owner goes; a standby takes over from the checkpoint.
        signalled = time.monotonic()
        a.send_signal(sig)
        wait_results(results, "from a new owner", lambda rs: bool(pids(rs[len(before):]) - {a.pid}))
        handover_s = time.monotonic() - signalled
        assert a.wait(timeout=60) == (0 if sig == signal.SIGTERM else -signal.SIGKILL), logs["a"].read_text()[-3000:]
        results.poll()
        during = results.all[len(before):]  # SIGTERM: the old owner's final stats come first
        new_pid = next(p for p in pids(during) if p != a.pid)
        owner, other = (b, c) if new_pid == b.pid else (c, b)
        owner_log = logs["b" if owner is b else "c"]
        restored = int(wait_log(owner_log, ACTIVE + r" (\d+)", owner).group(1))

        # Phase 2: only the new owner links it, onto phase 1's clusters from the checkpoint.
        publish(broker.bootstrap, "second", FLEET_B, ["pf_A"] * 5, drain=False)
        wait_results(results, "alerting phase 2", lambda rs: set(alerted(rs[len(before):])) >= set(FLEET_B))
        results.wait_for("covering phase 2 in a checkpoint", lambda r: (
            r.stats.get("pid") == owner.pid and r.stats.get("account_updates") == 11
            and r.stats.get("uncheckpointed_messages") == 0), since=len(before))
        after = [r for r in results.all[len(before):] if r.stats.get("pid") != a.pid]
        assert owner.poll() is None and other.poll() is None
        assert "linking: active" not in logs["b" if owner is c else "c"].read_text()

    assert pids(after) == {owner.pid} and restored >= 1
    assert set(alerted(before)) == {"early-x", *FLEET_A} and set(paged(before)) == set(alerted(before))
    # Phase 1 was in the checkpoint: nothing of it alerts again, phase 2's members alert once each.
    assert alerted(after) == FLEET_B and paged(after) == FLEET_B
    last: dict[str, tuple[int, list[str]]] = {}
    for r in results.all:
        for cid, active, members in zip(r.rows.cluster_id, r.rows.active, r.rows.account_ids, strict=True):
            last[cid] = (active, members)
    assert [members for flag, members in last.values() if flag] == [sorted(["early-x", *FLEET_A, *FLEET_B])]
    final = after[-1].stats
    assert final["role"] == "active" and final["group_members"] == 2 and final["restored_generation"] == restored
    assert handover_s < (30 if sig == signal.SIGTERM else 60), f"handover took {handover_s:.1f}s"
    print(f"{sig.name} handover {handover_s:.1f}s (restored generation {restored})")


def test_a_kill_before_any_checkpoint_of_the_input_re_sends_only_that_input(tmp_path: Path) -> None:
    """At-least-once (process docstring): the new owner re-reads what the dead one read since its
    last checkpoint, so phase 1's alerts come again (same accounts: idempotent downstream), and
    nothing else does."""
    with EmbeddedBroker(log_path=tmp_path / "broker.log") as broker, ExitStack() as stack:
        # No periodic checkpoint within the test (the maximum interval): only the one of B's join.
        env = {**child_env(broker.bootstrap, tmp_path), "DW_CHECKPOINT_INTERVAL_S": "300"}
        results = Results(broker.bootstrap)
        logs = {name: tmp_path / f"linking-{name}.log" for name in "ab"}
        procs = owner_and_standby(broker.bootstrap, env, logs, stack)
        a, b = procs["a"], procs["b"]
        results.wait_for("linking phase 1", lambda r: r.stats.get("account_updates") == 6
                         and r.stats.get("clusters") == 1 and r.stats.get("uncheckpointed_messages", 0) > 0)
        results.poll()
        before = list(results.all)

        a.send_signal(signal.SIGKILL)
        wait_results(results, "from the standby", lambda rs: b.pid in pids(rs[len(before):]))
        restored = int(wait_log(logs["b"], ACTIVE + r" (\d+)", b).group(1))
        results.wait_for("re-linking phase 1", lambda r: r.stats.get("pid") == b.pid
                         and r.stats.get("account_updates") == 6 and r.stats.get("clusters") == 1, since=len(before))
        publish(broker.bootstrap, "second", FLEET_B, ["pf_A"] * 5, drain=False)
        wait_results(results, "alerting phase 2", lambda rs: set(alerted(rs[len(before):])) >= set(FLEET_B))
        results.poll()
        after = results.all[len(before):]

    assert pids(before) == {a.pid} and pids(after) == {b.pid}
    phase1 = {"early-x", *FLEET_A}
    assert set(alerted(before)) == phase1
    # The re-read input alerts again (the same accounts), phase 2 once per new member, nothing else.
    assert set(alerted(after)) - set(FLEET_B) == phase1 and [x for x in alerted(after) if x in FLEET_B] == FLEET_B
    assert set(paged(after)) == phase1 | set(FLEET_B)
    final = after[-1].stats
    assert final["restored_generation"] == restored and final["account_updates"] == 11
