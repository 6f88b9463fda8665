"""The linking checkpoint: blocks and manifest in two alternating slots, restored from the folded topic."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from pipeline.linking.checkpoint import (
    MANIFEST_KEY,
    CheckpointError,
    CheckpointPlan,
    StateLog,
    block_key,
    encode_blocks,
    encode_manifest,
    parse_offset_key,
    plan_checkpoint,
)


def state(n: int, tag: str = "") -> dict[str, dict[str, Any]]:
    return {
        "features": {f"pay:card-{i}{tag}": {"m": {f"acct-{i}": [1_000 + i, 2**63 + i]}} for i in range(n)},
        "accounts": {f"acct-{i}": {"calls": i, "ts": 5, "score": 1.5, "score_ts": 5, "max": 2.0,
                                   "steps": [[5, 2.0]]} for i in range(n)},
        "alerted": {f"acct-{i}": {"cluster_extraction": {"state": "firing"}} for i in range(0, n, 7)},
        "sync": {f"acct-{i}": f"sync:{i % 5:08x}" for i in range(0, n, 3)},
        "minutes": {f"acct-{i}": [29_000_000 + i, [[29_000_000 + i, 3, 300, 900, 0, 1, 0, 0]]] for i in range(0, n, 4)},
    }


def write(log: StateLog, plan: CheckpointPlan, *, manifest: bool = True) -> None:
    for key, value in plan.blocks:
        log.add(key.encode(), value)
    if manifest:
        log.add(MANIFEST_KEY.encode(), plan.manifest)


def checkpoint(log: StateLog, sections: dict[str, dict[str, Any]], gen: int, offsets: dict[str, int],
               max_bytes: int = 4_096) -> CheckpointPlan:
    return plan_checkpoint(sections, gen, offsets, {"markers": [["src", 0], ["src", None]]},
                           slot_blocks=log.slot_blocks(gen % 2), max_bytes=max_bytes)


def test_a_checkpoint_round_trips_through_blocks_of_bounded_size() -> None:
    sections = state(300)
    plan = checkpoint(StateLog(), sections, 1, {"obs:0": 17, "edges:0": 4})
    assert len(plan.blocks) > 10
    assert all(len(v) <= 4_096 for _, v in plan.blocks if v is not None)
    assert [k for k, _ in plan.blocks] == [block_key(1, i) for i in range(len(plan.blocks))]
    log = StateLog()
    write(log, plan)
    restored = log.restore()
    assert restored is not None and restored.gen == 1
    assert restored.sections == sections  # uint64 samples included
    assert restored.offsets == {"obs:0": 17, "edges:0": 4}
    assert restored.meta == {"markers": [["src", 0], ["src", None]]}
    assert parse_offset_key("dw-link-observations:3") == ("dw-link-observations", 3)


def test_a_checkpoint_with_the_old_pairs_section_restores_without_it() -> None:
    # Written before the links were derived from the memberships: the pairs are derivable, so skipped.
    sections = state(40)
    plan = checkpoint(StateLog(), sections, 1, {"obs:0": 3})
    old_pairs = {f"acct-{i}\x1facct-{i + 1}": {f"pay:card-{i}": 1_000 + i} for i in range(40)}
    head = orjson.dumps({"gen": 1, "w": "", "i": len(plan.blocks), "s": "pairs"})
    block = (block_key(1, len(plan.blocks)), head[:-1] + b',"d":' + orjson.dumps(old_pairs) + b"}")
    old = CheckpointPlan(1, [*plan.blocks, block], encode_manifest(1, len(plan.blocks) + 1, {"obs:0": 3}, {}))
    log = StateLog()
    write(log, old)
    restored = log.restore()
    assert restored is not None and restored.sections == sections and "pairs" not in restored.sections


def test_no_manifest_means_no_checkpoint() -> None:
    log = StateLog()
    assert log.restore() is None
    write(log, checkpoint(log, state(5), 1, {}), manifest=False)
    assert log.restore() is None


def test_a_torn_write_restores_the_previous_generation() -> None:
    log = StateLog()
    write(log, checkpoint(log, state(50), 1, {"obs:0": 10}))
    write(log, checkpoint(log, state(80, "b"), 2, {"obs:0": 20}))
    # Generation 3 goes to generation 1's slot; the process dies before its manifest.
    write(log, checkpoint(log, state(120, "c"), 3, {"obs:0": 30}), manifest=False)
    restored = log.restore()
    assert restored is not None and (restored.gen, restored.offsets) == (2, {"obs:0": 20})
    assert restored.sections == state(80, "b")
    # The restarted process writes generation 3 again, over the torn blocks, then its manifest.
    write(log, checkpoint(log, state(10, "d"), 3, {"obs:0": 40}))
    restored = log.restore()
    assert restored is not None and (restored.gen, restored.sections) == (3, state(10, "d"))


def test_a_smaller_rewrite_of_a_slot_tombstones_its_leftover_blocks() -> None:
    log = StateLog()
    write(log, checkpoint(log, state(200), 1, {}))
    before = log.slot_blocks(1)
    write(log, checkpoint(log, state(5), 2, {}))
    plan = checkpoint(log, state(5), 3, {})
    tombstones = [k for k, v in plan.blocks if v is None]
    assert len(tombstones) == before - len([v for _, v in plan.blocks if v is not None]) > 0
    write(log, plan)
    assert log.slot_blocks(1) == len(plan.blocks) - len(tombstones)
    restored = log.restore()
    assert restored is not None and restored.sections == state(5)


def test_a_manifest_whose_blocks_are_gone_is_refused() -> None:
    log = StateLog()
    write(log, checkpoint(log, state(50), 1, {}))
    log.add(block_key(1, 0).encode(), None)
    with pytest.raises(CheckpointError, match="missing"):
        log.restore()
    log = StateLog()
    write(log, checkpoint(log, state(50), 1, {}))
    stale = orjson.loads(encode_blocks(state(50), 3)[0][1])
    log.add(block_key(1, 0), orjson.dumps(stale))
    with pytest.raises(CheckpointError, match="generation 3"):
        log.restore()


def test_blocks_of_another_writer_are_refused_not_mixed_in() -> None:
    # Two linking processes of one group (a misconfiguration) writing the same generation.
    log = StateLog()
    mine = plan_checkpoint(state(50), 5, {}, {}, slot_blocks=0, max_bytes=4_096, writer="host:1:1")
    theirs = plan_checkpoint(state(60, "x"), 5, {}, {}, slot_blocks=0, max_bytes=4_096, writer="host:2:2")
    write(log, mine)
    log.add(theirs.blocks[1][0], theirs.blocks[1][1])
    with pytest.raises(CheckpointError, match="'host:2:2'"):
        log.restore()


def test_one_entry_bigger_than_a_block_is_cut_by_its_biggest_dict_or_stays_whole() -> None:
    hub = {"h": {f"acct-{i}": [i, i] for i in range(500)}, "c": 7, "ts": 3}
    big: dict[str, dict[str, Any]] = {"features": {"tpl:0:x": hub, "ua:y": {"pop": 1, "n": 3}},
                                      "minutes": {"acct-1": [29_000_000, [[29_000_000 + i, i] for i in range(200)]]}}
    blocks = encode_blocks(big, 2, max_bytes=1_000)
    sizes = [len(v) for _, v in blocks]
    assert len(blocks) > 10 and max(sizes[:-1]) <= 1_000  # the hub's members in pieces
    assert sizes[-1] > 1_000  # a list cannot be cut: it stays whole
    log = StateLog()
    write(log, plan_checkpoint(big, 2, {}, {}, slot_blocks=0, max_bytes=1_000))
    restored = log.restore()
    assert restored is not None and restored.sections["features"] == big["features"]
    assert restored.sections["minutes"] == big["minutes"]

