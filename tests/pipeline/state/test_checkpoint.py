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
    Marker,
    PartitionLog,
    StoreLayout,
    array_layout,
    block_key,
    block_size,
    decode_block,
    decode_marker,
    encode_block,
    encode_marker,
    marker_header,
    marker_key,
    move_marker,
    peek_seq,
)


def _slot_arrays(extra: bool = False, ring: int = 3) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {
        "frame_minute": np.arange(8 * ring, dtype=np.int64).reshape(8, ring),
        "counters": np.arange(8 * ring * 5, dtype=np.int64).reshape(8, ring, 5) * 7,
        "windows": np.linspace(0, 1, 8 * 2 * 3, dtype=np.float32).reshape(8, 2, 3),
        "slot_part": np.arange(8, dtype=np.int16) % 4,
    }
    if extra:
        arrays["new_sketch"] = np.ones((8, 16), np.uint8)
    return arrays


PART_ARRAYS = {"part_max_ts": np.array([10, 20, 30, 40], np.int64), "part_late": np.array([0, 1, 2, 3], np.int64)}


def _layout(**kw: object) -> StoreLayout:
    return StoreLayout(array_layout(_slot_arrays(**kw)), array_layout(PART_ARRAYS))  # type: ignore[arg-type]


def _rows(slots: list[int], **kw: object) -> dict[str, np.ndarray]:
    return {k: v[slots] for k, v in _slot_arrays(**kw).items()}  # type: ignore[arg-type]


def _block(seq: int, part: int, block: int, slots: list[int], layout: StoreLayout | None = None,
           extras: list[dict[str, object]] | None = None, **kw: object) -> bytes:
    layout = layout or _layout(**kw)
    first = block * layout.block_size
    return encode_block(seq, part, block, np.arange(first, first + len(slots)), [f"org-{s}" for s in slots],
                        extras or [{} for _ in slots], _rows(slots, **kw), layout)


def _marker(part: int, seq: int, layouts: dict[str, StoreLayout], base_seq: int = 0, offset: int = 100) -> bytes:
    rows = {name: {k: v[part] for k, v in PART_ARRAYS.items()} for name in layouts}
    return encode_marker(Marker(part, seq, base_seq, offset, rows, layouts))


def test_block_round_trip_keeps_every_array_bit_for_bit() -> None:
    layout = _layout()
    size = layout.block_size
    extras = [{"max_score": 81.5, "last_fired_minute": 29_514_810}, {}, {"max_score": 0.1 + 0.2}]
    names = ["org/with/slash", "ünïcode", ""]
    ordinals = np.array([3 * size, 3 * size + 1, 3 * size + 7])
    value = encode_block(7, 2, 3, ordinals, names, extras, _rows([5, 0, 7]), layout)
    rec = decode_block(block_key("account", 2, 3), value, {"account": layout})
    assert rec is not None
    assert (rec.store, rec.part, rec.block, rec.seq, len(rec)) == ("account", 2, 3, 7, 3)
    assert rec.names == names and rec.extras == extras and rec.ordinals.tolist() == ordinals.tolist()
    for name, rows in _rows([5, 0, 7]).items():
        assert rec.rows[name].dtype == rows.dtype and rec.rows[name].tobytes() == rows.tobytes()
    assert peek_seq(value) == 7


def test_an_empty_block_round_trips() -> None:
    rec = decode_block(block_key("account", 0, 4), _block(3, 0, 4, []), {"account": _layout()})
    assert rec is not None and len(rec) == 0 and rec.rows["counters"].shape == (0, 3, 5)


def test_block_size_keeps_records_well_under_a_megabyte_and_is_fixed_by_the_layout() -> None:
    assert block_size(_layout().slots) == block_size(_layout().slots) == 1024  # small rows: the cap
    big = StoreLayout((("rows", "<i8", (3, 27)), ("hll", "|u1", (3, 144))), ())
    size = big.block_size
    assert size & (size - 1) == 0 and size * (648 + 432 + 8) <= BLOCK_TARGET_BYTES < 2 * size * (648 + 432 + 8)
    assert StoreLayout((("huge", "|u1", (2 << 20,)),), ()).block_size == 1


def test_marker_round_trip() -> None:
    layouts = {"account": _layout(), "api_key": _layout()}
    m = decode_marker(_marker(3, 12, layouts, base_seq=4, offset=9_876), layouts)
    assert (m.part, m.seq, m.base_seq, m.next_offset) == (3, 12, 4, 9_876)
    assert m.rows["api_key"]["part_max_ts"] == 40 and m.rows["account"]["part_late"] == 3


def test_an_added_array_changes_the_layout_and_old_records_are_refused_naming_it() -> None:
    old, new = _layout(), _layout(extra=True)
    assert old.fingerprint != new.fingerprint
    value = _block(1, 0, 0, [0], old)
    with pytest.raises(CheckpointLayoutError, match="predates a change"):
        decode_block(block_key("account", 0, 0), value, {"account": new})
    with pytest.raises(CheckpointLayoutError, match="new_sketch") as info:
        decode_marker(_marker(0, 1, {"account": old}), {"account": new})
    assert "reset-offsets --to-current --reset-state" in str(info.value)


def test_a_changed_row_shape_is_refused() -> None:
    with pytest.raises(CheckpointLayoutError, match=r"frame_minute <i8\[3\] -> <i8\[4\]"):
        decode_marker(_marker(0, 1, {"account": _layout()}), {"account": _layout(ring=4)})


def test_rows_of_the_wrong_dtype_are_not_written() -> None:
    rows = _rows([0])
    rows["slot_part"] = rows["slot_part"].astype(np.int64)
    with pytest.raises(CheckpointLayoutError, match="slot_part"):
        encode_block(1, 0, 0, np.array([0]), ["a"], [{}], rows, _layout())


def _version_1(kind: bytes, header: dict[str, object]) -> bytes:
    head = orjson.dumps(header)
    return struct.pack("<3sBcI", MAGIC, 1, kind, len(head)) + head + b"\0" * 16


def test_records_of_the_previous_format_are_refused_but_their_headers_stay_readable() -> None:
    old_entity = _version_1(b"E", {"seq": 4, "part": 0, "layout": "x", "extras": {}})
    old_marker = _version_1(b"M", {"part": 0, "seq": 5, "base_seq": 0, "next_offset": 77, "stores": {}})
    with pytest.raises(CheckpointLayoutError, match=r"format version 1.*reset-offsets --to-current --reset-state"):
        decode_block(b"account/org-1", old_entity, {"account": _layout()})
    with pytest.raises(CheckpointLayoutError, match="format version 1"):
        decode_marker(old_marker, {"account": _layout()})
    # reset-offsets still reads where such a checkpoint stands, and can move or void it.
    assert peek_seq(old_entity) == 4 and marker_header(old_marker)["next_offset"] == 77
    moved = move_marker(old_marker, 9)
    assert moved[3] == 1 and marker_header(moved)["next_offset"] == 9


def test_blocks_holding_ordinals_of_another_block_size_are_refused() -> None:
    layout = _layout()
    value = encode_block(1, 0, 0, np.array([layout.block_size]), ["a"], [{}], _rows([0]), layout)
    with pytest.raises(CheckpointLayoutError, match="outside block 0"):
        decode_block(block_key("account", 0, 0), value, {"account": layout})


def test_garbage_is_an_error_not_a_crash() -> None:
    layouts = {"account": _layout()}
    for value in (b"", b"hello world, not a record", b"DWS\x02B\x00\x00\x00\x00", b"DWS\x02B\xff\x00\x00\x00{"):
        with pytest.raises(CheckpointError):
            decode_block(b"account/0/0", value, layouts)
    truncated = _block(1, 0, 0, [0, 1])[:-3]
    with pytest.raises(CheckpointError, match="truncated or damaged"):
        decode_block(b"account/0/0", truncated, layouts)
    for key in (b"account/org-1", b"account/0/x", b"/0/0"):
        with pytest.raises(CheckpointError, match="not a block key"):
            decode_block(key, _block(1, 0, 0, [0]), layouts)
    with pytest.raises(CheckpointError, match="of partition 0 block 0"):
        decode_block(b"account/1/0", _block(1, 0, 0, [0]), layouts)


def test_a_store_this_worker_does_not_keep_is_skipped() -> None:
    assert decode_block(block_key("api_key", 0, 0), _block(1, 0, 0, [0]), {"account": _layout()}) is None


# --- which records are valid ---------------------------------------------------------------

L = {"account": _layout()}


def _ent(name: str, seq: int, tag: int = 0) -> tuple[bytes, bytes]:
    """A one-member block standing for ``name`` (its block number: the number in the name, else its letter)."""
    block = int(name.rsplit("-", 1)[1]) if "-" in name else ord(name) - ord("a")
    value = _block(seq, 0, block, [tag % 8], L["account"], [{"tag": tag, "name": name}])
    return block_key("account", 0, block), value


def _mk(seq: int, base_seq: int = 0) -> tuple[bytes, bytes]:
    return marker_key(0), _marker(0, seq, L, base_seq)


def _name(key: bytes) -> str:
    return chr(ord("a") + int(key.decode().rsplit("/", 1)[1]))


def _choose(records: Sequence[tuple[bytes, bytes | None]]) -> dict[str, object]:
    log = PartitionLog(0)
    for key, value in records:
        log.add(key, value)
    chosen = log.chosen()
    tags = {}
    for key, value in chosen.blocks.items():
        rec = decode_block(key, value, L)
        assert rec is not None
        tags[rec.extras[0]["name"]] = rec.extras[0]["tag"]
    return {"tags": tags, "rewrite": sorted(_name(k) for k in chosen.rewrite),
            "tombstones": sorted(_name(k) for k in chosen.tombstones), "max_seq": chosen.max_seq}


def test_latest_confirmed_record_per_entity_wins() -> None:
    got = _choose([_ent("a", 1, 10), _ent("b", 1, 20), _mk(1), _ent("a", 2, 11), _mk(2)])
    assert got == {"tags": {"a": 11, "b": 20}, "rewrite": [], "tombstones": [], "max_seq": 2}


def test_records_after_the_last_marker_are_an_unfinished_checkpoint() -> None:
    # The worker died after writing a's and c's records of checkpoint 2, before its marker.
    got = _choose([_ent("a", 1, 10), _ent("b", 1, 20), _mk(1), _ent("a", 2, 11), _ent("c", 2, 30)])
    assert got == {"tags": {"a": 10, "b": 20}, "rewrite": ["a"], "tombstones": ["c"],
                   "max_seq": 2}


def test_orphans_rewritten_by_the_next_worker_are_superseded() -> None:
    records = [_ent("a", 1, 10), _mk(1), _ent("a", 2, 11), _ent("c", 2, 30),  # orphans of seq 2
               _ent("a", 3, 10), (_ent("c", 3)[0], None), _mk(3)]  # the repair, checkpoint 3
    assert _choose(records) == {"tags": {"a": 10}, "rewrite": [], "tombstones": [], "max_seq": 3}


def test_two_crashes_in_a_row_fall_back_to_the_last_marker() -> None:
    records = [_ent("a", 1, 10), _mk(1), _ent("a", 2, 11), _ent("a", 3, 12)]
    assert _choose(records)["tags"] == {"a": 10}


def test_a_reset_marker_voids_older_records() -> None:
    records = [_ent("a", 1, 10), _ent("b", 1, 20), _mk(1), _mk(2, base_seq=2), _ent("b", 3, 21), _mk(3, base_seq=2)]
    got = _choose(records)
    assert got["tags"] == {"b": 21} and got["tombstones"] == ["a"]


def test_no_marker_means_no_state() -> None:
    got = _choose([_ent("a", 1, 10)])
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
            log.append(_ent(name, seq, memory[name]))
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
                log.append(_ent(_name(key), seq, memory[_name(key)]))
            log.extend((key, None) for key in chosen.tombstones)
        log.append(_mk(seq))
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
