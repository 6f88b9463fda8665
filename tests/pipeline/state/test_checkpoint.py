"""State-topic records: round trips, layout checks, and which records a restore keeps."""

from __future__ import annotations

import struct
from collections.abc import Sequence

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.state.checkpoint import (
    BLOCK_TARGET_BYTES,
    MAGIC,
    CheckpointError,
    CheckpointLayoutError,
    PartitionLog,
    StoreLayout,
    block_key,
    block_size,
    decode_block,
    decode_marker,
    encode_block,
    marker_header,
    move_marker,
    peek_seq,
)
from tests.support.checkpoint_records import (
    LAYOUTS,
    block_bytes,
    ent,
    make_layout,
    marker_bytes,
    mk,
    slot_rows,
)


def test_block_round_trip_keeps_every_array_bit_for_bit() -> None:
    layout = make_layout()
    size = layout.block_size
    extras = [{"max_score": 81.5, "last_fired_minute": 29_514_810}, {}, {"max_score": 0.1 + 0.2}]
    names = ["org/with/slash", "ünïcode", ""]
    ordinals = np.array([3 * size, 3 * size + 1, 3 * size + 7])
    value = encode_block(7, 2, 3, ordinals, names, extras, slot_rows([5, 0, 7]), layout)
    rec = decode_block(block_key("account", 2, 3), value, {"account": layout})
    assert rec is not None
    assert (rec.store, rec.part, rec.block, rec.seq, len(rec)) == ("account", 2, 3, 7, 3)
    assert rec.names == names and rec.extras == extras and rec.ordinals.tolist() == ordinals.tolist()
    for name, rows in slot_rows([5, 0, 7]).items():
        assert rec.rows[name].dtype == rows.dtype and rec.rows[name].tobytes() == rows.tobytes()
    assert peek_seq(value) == 7


def test_an_empty_block_round_trips() -> None:
    rec = decode_block(block_key("account", 0, 4), block_bytes(3, 0, 4, []), {"account": make_layout()})
    assert rec is not None and len(rec) == 0 and rec.rows["counters"].shape == (0, 3, 5)


def test_block_size_keeps_records_well_under_a_megabyte_and_is_fixed_by_the_layout() -> None:
    assert block_size(make_layout().slots) == block_size(make_layout().slots) == 1024  # small rows: the cap
    big = StoreLayout((("rows", "<i8", (3, 27)), ("hll", "|u1", (3, 144))), ())
    size = big.block_size
    assert size & (size - 1) == 0 and size * (648 + 432 + 8) <= BLOCK_TARGET_BYTES < 2 * size * (648 + 432 + 8)
    assert StoreLayout((("huge", "|u1", (2 << 20,)),), ()).block_size == 1


def test_marker_round_trip() -> None:
    layouts = {"account": make_layout(), "api_key": make_layout()}
    m = decode_marker(marker_bytes(3, 12, layouts, base_seq=4, offset=9_876), layouts)
    assert (m.part, m.seq, m.base_seq, m.next_offset) == (3, 12, 4, 9_876)
    assert m.rows["api_key"]["part_max_ts"] == 40 and m.rows["account"]["part_late"] == 3


def test_an_added_array_changes_the_layout_and_old_records_are_refused_naming_it() -> None:
    old, new = make_layout(), make_layout(extra=True)
    assert old.fingerprint != new.fingerprint
    value = block_bytes(1, 0, 0, [0], old)
    with pytest.raises(CheckpointLayoutError, match="predates a change"):
        decode_block(block_key("account", 0, 0), value, {"account": new})
    with pytest.raises(CheckpointLayoutError, match="new_sketch") as info:
        decode_marker(marker_bytes(0, 1, {"account": old}), {"account": new})
    assert "reset-offsets --to-current --reset-state" in str(info.value)


def test_a_changed_row_shape_is_refused() -> None:
    with pytest.raises(CheckpointLayoutError, match=r"frame_minute <i8\[3\] -> <i8\[4\]"):
        decode_marker(marker_bytes(0, 1, {"account": make_layout()}), {"account": make_layout(ring=4)})


def test_rows_of_the_wrong_dtype_are_not_written() -> None:
    rows = slot_rows([0])
    rows["slot_part"] = rows["slot_part"].astype(np.int64)
    with pytest.raises(CheckpointLayoutError, match="slot_part"):
        encode_block(1, 0, 0, np.array([0]), ["a"], [{}], rows, make_layout())


def _version_1(kind: bytes, header: dict[str, object]) -> bytes:
    head = orjson.dumps(header)
    return struct.pack("<3sBcI", MAGIC, 1, kind, len(head)) + head + b"\0" * 16


def test_records_of_the_previous_format_are_refused_but_their_headers_stay_readable() -> None:
    old_entity = _version_1(b"E", {"seq": 4, "part": 0, "layout": "x", "extras": {}})
    old_marker = _version_1(b"M", {"part": 0, "seq": 5, "base_seq": 0, "next_offset": 77, "stores": {}})
    with pytest.raises(CheckpointLayoutError, match=r"format version 1.*reset-offsets --to-current --reset-state"):
        decode_block(b"account/org-1", old_entity, {"account": make_layout()})
    with pytest.raises(CheckpointLayoutError, match="format version 1"):
        decode_marker(old_marker, {"account": make_layout()})
    # reset-offsets still reads where such a checkpoint stands, and can move or void it.
    assert peek_seq(old_entity) == 4 and marker_header(old_marker)["next_offset"] == 77
    moved = move_marker(old_marker, 9)
    assert moved[3] == 1 and marker_header(moved)["next_offset"] == 9


def test_blocks_holding_ordinals_of_another_block_size_are_refused() -> None:
    layout = make_layout()
    value = encode_block(1, 0, 0, np.array([layout.block_size]), ["a"], [{}], slot_rows([0]), layout)
    with pytest.raises(CheckpointLayoutError, match="outside block 0"):
        decode_block(block_key("account", 0, 0), value, {"account": layout})


def test_garbage_is_an_error_not_a_crash() -> None:
    layouts = {"account": make_layout()}
    for value in (b"", b"hello world, not a record", b"DWS\x02B\x00\x00\x00\x00", b"DWS\x02B\xff\x00\x00\x00{"):
        with pytest.raises(CheckpointError):
            decode_block(b"account/0/0", value, layouts)
    truncated = block_bytes(1, 0, 0, [0, 1])[:-3]
    with pytest.raises(CheckpointError, match="truncated or damaged"):
        decode_block(b"account/0/0", truncated, layouts)
    for key in (b"account/org-1", b"account/0/x", b"/0/0"):
        with pytest.raises(CheckpointError, match="not a block key"):
            decode_block(key, block_bytes(1, 0, 0, [0]), layouts)
    with pytest.raises(CheckpointError, match="of partition 0 block 0"):
        decode_block(b"account/1/0", block_bytes(1, 0, 0, [0]), layouts)


def test_a_store_this_worker_does_not_keep_is_skipped() -> None:
    assert decode_block(block_key("api_key", 0, 0), block_bytes(1, 0, 0, [0]), {"account": make_layout()}) is None


# --- which records are valid ---------------------------------------------------------------

def _name(key: bytes) -> str:
    return chr(ord("a") + int(key.decode().rsplit("/", 1)[1]))


def _choose(records: Sequence[tuple[bytes, bytes | None]]) -> dict[str, object]:
    log = PartitionLog(0)
    for key, value in records:
        log.add(key, value)
    chosen = log.chosen()
    tags = {}
    for key, value in chosen.blocks.items():
        rec = decode_block(key, value, LAYOUTS)
        assert rec is not None
        tags[rec.extras[0]["name"]] = rec.extras[0]["tag"]
    return {"tags": tags, "rewrite": sorted(_name(k) for k in chosen.rewrite),
            "tombstones": sorted(_name(k) for k in chosen.tombstones), "max_seq": chosen.max_seq}


def test_latest_confirmed_record_per_entity_wins() -> None:
    got = _choose([ent("a", 1, 10), ent("b", 1, 20), mk(1), ent("a", 2, 11), mk(2)])
    assert got == {"tags": {"a": 11, "b": 20}, "rewrite": [], "tombstones": [], "max_seq": 2}


def test_records_after_the_last_marker_are_an_unfinished_checkpoint() -> None:
    # The worker died after writing a's and c's records of checkpoint 2, before its marker.
    got = _choose([ent("a", 1, 10), ent("b", 1, 20), mk(1), ent("a", 2, 11), ent("c", 2, 30)])
    assert got == {"tags": {"a": 10, "b": 20}, "rewrite": ["a"], "tombstones": ["c"],
                   "max_seq": 2}


def test_orphans_rewritten_by_the_next_worker_are_superseded() -> None:
    records = [ent("a", 1, 10), mk(1), ent("a", 2, 11), ent("c", 2, 30),  # orphans of seq 2
               ent("a", 3, 10), (ent("c", 3)[0], None), mk(3)]  # the repair, checkpoint 3
    assert _choose(records) == {"tags": {"a": 10}, "rewrite": [], "tombstones": [], "max_seq": 3}


def test_two_crashes_in_a_row_fall_back_to_the_last_marker() -> None:
    records = [ent("a", 1, 10), mk(1), ent("a", 2, 11), ent("a", 3, 12)]
    assert _choose(records)["tags"] == {"a": 10}


def test_a_reset_marker_voids_older_records() -> None:
    records = [ent("a", 1, 10), ent("b", 1, 20), mk(1), mk(2, base_seq=2), ent("b", 3, 21), mk(3, base_seq=2)]
    got = _choose(records)
    assert got["tags"] == {"b": 21} and got["tombstones"] == ["a"]


def test_no_marker_means_no_state() -> None:
    got = _choose([ent("a", 1, 10)])
    assert got["tags"] == {} and got["tombstones"] == ["a"]


# Model of the writer: checkpoints of random entities, crashes that cut a checkpoint
# before its marker, and the restart protocol (rewrite or remove what an orphan hides;
# new seq above every seq seen).
@st.composite
def histories(draw: st.DrawFn) -> list[tuple[list[tuple[str, int]], bool]]:
    names = st.sampled_from("abcdef")
    steps = draw(st.lists(st.tuples(st.lists(st.tuples(names, st.integers(0, 99)), max_size=5), st.booleans()),
                          min_size=1, max_size=12))
    return steps


def _replay_model(steps: list[tuple[list[tuple[str, int]], bool]]) -> tuple[list[tuple[bytes, bytes | None]],
                                                                            dict[str, int]]:
    log: list[tuple[bytes, bytes | None]] = []
    committed: dict[str, int] = {}
    memory: dict[str, int] = {}
    seq = 0
    for changes, crash in steps:
        seq += 1
        for name, tag in changes:
            memory[name] = tag
        for name in dict(changes):
            log.append(ent(name, seq, memory[name]))
        if crash:
            # Restart: restore what the log says, then write the repair as the next checkpoint.
            pl = PartitionLog(0)
            for k, v in log:
                pl.add(k, v)
            chosen = pl.chosen()
            assert {_name(k) for k in chosen.blocks} == set(committed)
            memory = dict(committed)
            seq = chosen.max_seq + 1
            for key in chosen.rewrite:
                log.append(ent(_name(key), seq, memory[_name(key)]))
            log.extend((key, None) for key in chosen.tombstones)
        log.append(mk(seq))
        committed = dict(memory)
    return log, committed


@settings(max_examples=60, deadline=None, derandomize=True)
@given(histories())
def test_restore_after_any_history_of_crashes_equals_the_last_completed_checkpoint(
        steps: list[tuple[list[tuple[str, int]], bool]]) -> None:
    log, committed = _replay_model(steps)
    assert _choose(log)["tags"] == committed
    # Compaction keeps only each key's latest record (order kept): same answer.
    latest = {k: i for i, (k, _) in enumerate(log)}
    compacted = [rec for i, rec in enumerate(log) if latest[rec[0]] == i]
    assert _choose(compacted)["tags"] == committed
