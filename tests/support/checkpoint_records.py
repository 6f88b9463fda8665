"""State-topic records built from small fixed arrays: blocks, markers, and one-member blocks named by letter."""

from __future__ import annotations

import numpy as np

from pipeline.state.checkpoint import (
    Marker,
    StoreLayout,
    array_layout,
    block_key,
    encode_block,
    encode_marker,
    marker_key,
)


def slot_arrays(extra: bool = False, ring: int = 3) -> dict[str, np.ndarray]:
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


def make_layout(**kw: object) -> StoreLayout:
    return StoreLayout(array_layout(slot_arrays(**kw)), array_layout(PART_ARRAYS))  # type: ignore[arg-type]


def slot_rows(slots: list[int], **kw: object) -> dict[str, np.ndarray]:
    return {k: v[slots] for k, v in slot_arrays(**kw).items()}  # type: ignore[arg-type]


def block_bytes(seq: int, part: int, block: int, slots: list[int], layout: StoreLayout | None = None,
                extras: list[dict[str, object]] | None = None, **kw: object) -> bytes:
    layout = layout or make_layout(**kw)
    first = block * layout.block_size
    return encode_block(seq, part, block, np.arange(first, first + len(slots)), [f"org-{s}" for s in slots],
                        extras or [{} for _ in slots], slot_rows(slots, **kw), layout)


def marker_bytes(part: int, seq: int, layouts: dict[str, StoreLayout], base_seq: int = 0, offset: int = 100) -> bytes:
    rows = {name: {k: v[part] for k, v in PART_ARRAYS.items()} for name in layouts}
    return encode_marker(Marker(part, seq, base_seq, offset, rows, layouts))


LAYOUTS = {"account": make_layout()}


def ent(name: str, seq: int, tag: int = 0) -> tuple[bytes, bytes]:
    """A one-member block standing for ``name`` (its block number: the number in the name, else its letter)."""
    block = int(name.rsplit("-", 1)[1]) if "-" in name else ord(name) - ord("a")
    value = block_bytes(seq, 0, block, [tag % 8], LAYOUTS["account"], [{"tag": tag, "name": name}])
    return block_key("account", 0, block), value


def mk(seq: int, base_seq: int = 0) -> tuple[bytes, bytes]:
    """The marker of checkpoint ``seq`` of partition 0."""
    return marker_key(0), marker_bytes(0, seq, LAYOUTS, base_seq)
