"""State-topic records: encode, decode, and choose the valid ones. Pure: no Kafka, no Detector.

State partition ``p`` holds everything about input partition ``p``: *blocks* (key
``<store>/<p>/<block>``, lz4), a *marker* (``__partition__/<p>``, written after a checkpoint's
blocks) and tombstones. ``PartitionLog`` keeps, per block, the latest record whose ``seq`` lies
in ``[M.base_seq, M.seq]`` of the last marker M; a larger ``seq`` is an orphan, ignored and
rewritten (``ChosenState.rewrite``/``tombstones``). A record of another format version or
layout is refused with ``CheckpointLayoutError``. The format, restore and compaction in full:
docs/operations.md ("The state topic").
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import lz4.block
import numpy as np
import orjson

FORMAT_VERSION = 2  # 1: one record per entity (refused, see _unpack)
MAGIC = b"DWS"
KIND_BLOCK = b"B"
KIND_MARKER = b"M"
MARKER_PREFIX = "__partition__/"
BLOCK_TARGET_BYTES = 256 << 10  # uncompressed rows per block record: well under 1 MB with the header
MAX_BLOCK_SIZE = 1024
_HEAD = struct.Struct("<3sBcI")  # magic, format version, kind, header length
_ORDINAL = np.dtype("<i8")
_U32 = struct.Struct("<I")
RESET_ADVICE = ("Run the version that wrote it, or discard the state: "
                "distillwatch reset-offsets --to-current --reset-state (docs/operations.md)")

# (array name, dtype string such as "<i8", row shape): one entry per array, in order.
ArrayLayout = tuple[tuple[str, str, tuple[int, ...]], ...]


class CheckpointError(RuntimeError):
    """A state-topic record cannot be read."""


class CheckpointLayoutError(CheckpointError):
    """The checkpoint was written with other state arrays (or format) than this worker's: refused."""


def _row_bytes(layout: ArrayLayout) -> int:
    return sum(np.dtype(d).itemsize * int(np.prod(s, dtype=np.int64)) for _, d, s in layout)


def block_size(layout: ArrayLayout) -> int:
    """Entities per block record: a power of two, fixed by the layout (so equal layouts agree)."""
    fit = max(1, BLOCK_TARGET_BYTES // max(1, _row_bytes(layout) + _ORDINAL.itemsize))
    return min(MAX_BLOCK_SIZE, 1 << (fit.bit_length() - 1))


@dataclass(frozen=True)
class StoreLayout:
    """The arrays of one keyed store: per slot (entity) and per partition."""

    slots: ArrayLayout
    partitions: ArrayLayout

    @property
    def fingerprint(self) -> str:
        return layout_fingerprint(self.slots)

    @property
    def block_size(self) -> int:
        return block_size(self.slots)


def array_layout(arrays: Mapping[str, np.ndarray]) -> ArrayLayout:
    """Layout of arrays whose axis 0 is the slot or partition: what one row looks like."""
    return tuple((name, arr.dtype.str, tuple(int(n) for n in arr.shape[1:])) for name, arr in arrays.items())


def layout_fingerprint(layout: ArrayLayout) -> str:
    text = orjson.dumps([FORMAT_VERSION, [[n, d, list(s)] for n, d, s in layout]])
    return hashlib.blake2b(text, digest_size=8).hexdigest()


def describe_layout_change(written: ArrayLayout, current: ArrayLayout) -> str:
    """What differs between two layouts, for an operator."""
    old = {n: (d, s) for n, d, s in written}
    new = {n: (d, s) for n, d, s in current}
    parts = []
    if missing := [n for n in new if n not in old]:
        parts.append(f"arrays this worker has but the checkpoint lacks: {missing}")
    if extra := [n for n in old if n not in new]:
        parts.append(f"arrays in the checkpoint this worker lacks: {extra}")
    changed = [f"{n} {old[n][0]}{list(old[n][1])} -> {new[n][0]}{list(new[n][1])}"
               for n in new if n in old and old[n] != new[n]]
    if changed:
        parts.append(f"changed dtype or row shape: {changed}")
    if not parts and [n for n, _, _ in written] != [n for n, _, _ in current]:
        parts.append("same arrays in another order")
    return "; ".join(parts) or "no difference"


# --- keys -------------------------------------------------------------------------------

def block_key(store: str, part: int, block: int) -> bytes:
    return f"{store}/{part}/{block}".encode()


def split_block_key(key: bytes) -> tuple[str, int, int]:
    fields = key.decode(errors="replace").rsplit("/", 2)
    if len(fields) != 3 or not fields[0] or not all(f.isascii() and f.isdigit() for f in fields[1:]):
        raise CheckpointError(f"not a block key of this format: {key!r}")
    return fields[0], int(fields[1]), int(fields[2])


def marker_key(part: int) -> bytes:
    return f"{MARKER_PREFIX}{part}".encode()


def is_marker_key(key: bytes) -> bool:
    return key.startswith(MARKER_PREFIX.encode())


# --- values -----------------------------------------------------------------------------

def _pack(kind: bytes, header: dict[str, Any], payload: Sequence[bytes | memoryview],
          version: int = FORMAT_VERSION) -> bytes:
    head = orjson.dumps(header)
    return b"".join([_HEAD.pack(MAGIC, version, kind, len(head)), head, *payload])


def _unpack(value: bytes, kind: bytes, *, any_version: bool = False) -> tuple[dict[str, Any], memoryview, int]:
    """Header, payload and format version. ``any_version``: read the header of an older format too."""
    if len(value) < _HEAD.size:
        raise CheckpointError(f"state record too short ({len(value)} bytes)")
    magic, version, got_kind, head_len = _HEAD.unpack_from(value)
    if magic != MAGIC:
        raise CheckpointError("not a distillwatch state record (bad magic)")
    if version != FORMAT_VERSION and not (any_version and 0 < version < FORMAT_VERSION):
        raise CheckpointLayoutError(
            f"state record format version {version}, this worker reads version {FORMAT_VERSION}. {RESET_ADVICE}")
    if got_kind != kind:
        raise CheckpointError(f"expected a {kind!r} record, got {got_kind!r}")
    end = _HEAD.size + head_len
    if end > len(value):
        raise CheckpointError("state record truncated in its header")
    try:
        header = orjson.loads(value[_HEAD.size:end])
    except orjson.JSONDecodeError as exc:
        raise CheckpointError(f"state record header unreadable: {exc}") from exc
    return header, memoryview(value)[end:], version


def _check_rows(name: str, rows: np.ndarray, dtype: str, shape: tuple[int, ...]) -> None:
    if rows.dtype.str != dtype or rows.shape[1:] != shape:
        raise CheckpointLayoutError(f"{name}: rows {rows.dtype.str}{list(rows.shape[1:])} are not {dtype}{list(shape)}")


def _rows_bytes(rows: Mapping[str, np.ndarray], layout: ArrayLayout) -> list[bytes]:
    """One row (no leading axis) of every array of ``layout``."""
    out = []
    for name, dtype, shape in layout:
        row = np.asarray(rows[name])
        _check_rows(name, row[np.newaxis], dtype, shape)
        out.append(np.ascontiguousarray(row).tobytes())
    return out


def _read_arrays(payload: memoryview, layout: ArrayLayout, n: int, start: int = 0
                 ) -> tuple[dict[str, np.ndarray], int]:
    """``n`` rows of every array of ``layout`` (read-only views); n 0 with shape () means one scalar row."""
    rows: dict[str, np.ndarray] = {}
    at = start
    for name, dtype, shape in layout:
        dt = np.dtype(dtype)
        count = n * int(np.prod(shape, dtype=np.int64))
        if at + count * dt.itemsize > len(payload):
            raise CheckpointError(f"state record truncated in array {name!r}")
        rows[name] = np.frombuffer(payload, dt, count, at).reshape((n, *shape))
        at += count * dt.itemsize
    return rows, at


def encode_block(seq: int, part: int, block: int, ordinals: np.ndarray, names: Sequence[str],
                 extras: Sequence[Mapping[str, Any]], arrays: Mapping[str, np.ndarray], layout: StoreLayout) -> bytes:
    """Value of a block record: member ``i`` is ``names[i]`` at ``ordinals[i]``, with row ``i`` of every array.

    ``arrays`` holds, for every slot array of ``layout``, the members' rows (axis 0
    follows ``names``). The body (members as JSON, ordinals, arrays) is lz4-compressed
    here, in the checkpoint thread, rather than by the producer on the event loop.
    """
    n = len(names)
    ords = np.ascontiguousarray(ordinals, _ORDINAL)
    if ords.shape != (n,) or len(extras) != n:
        raise ValueError(f"block {block}: {n} names, {ords.shape} ordinals, {len(extras)} extras")
    members = orjson.dumps({"names": list(names), "extras": [dict(e) for e in extras]})
    body: list[bytes | memoryview] = [_U32.pack(len(members)), members, ords.data]
    for name, dtype, shape in layout.slots:
        rows = np.ascontiguousarray(arrays[name])
        _check_rows(name, rows, dtype, shape)
        if rows.shape[0] != n:
            raise ValueError(f"block {block}: {rows.shape[0]} rows of {name} for {n} members")
        body.append(rows.reshape(-1).view(np.uint8).data)
    raw = b"".join(body)
    header = {"seq": seq, "part": part, "block": block, "layout": layout.fingerprint, "n": n, "raw": len(raw)}
    return _pack(KIND_BLOCK, header, [lz4.block.compress(raw, store_size=False)])


@dataclass(frozen=True)
class BlockRecord:
    store: str
    part: int
    block: int
    seq: int
    ordinals: np.ndarray  # int64, one per member
    names: list[str]
    rows: dict[str, np.ndarray]  # array name -> members' rows (read-only views of the record's bytes)
    extras: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.names)


def peek_seq(value: bytes) -> int:
    """The ``seq`` of a block or marker value of any format version, reading only its header."""
    if len(value) < _HEAD.size or value[:3] != MAGIC:
        raise CheckpointError("not a distillwatch state record (bad magic)")
    head_len = _HEAD.unpack_from(value)[3]
    try:
        return int(orjson.loads(value[_HEAD.size:_HEAD.size + head_len])["seq"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"state record header unreadable: {exc!r}") from exc


def decode_block(key: bytes, value: bytes, layouts: Mapping[str, StoreLayout]) -> BlockRecord | None:
    """A block record, or None when its store is not one of ``layouts`` (a store switched off).

    Raises CheckpointLayoutError when it was written with another format or layout.
    """
    header, payload, _ = _unpack(value, KIND_BLOCK)
    store, part, block = split_block_key(key)
    layout = layouts.get(store)
    if layout is None:
        return None
    where = f"state block {key.decode(errors='replace')}"
    if header["layout"] != layout.fingerprint:
        raise CheckpointLayoutError(
            f"{where} was checkpointed with array layout {header['layout']}, this worker's is "
            f"{layout.fingerprint}: the record predates a change of the state arrays. {RESET_ADVICE}")
    if (int(header["part"]), int(header["block"])) != (part, block):
        raise CheckpointError(f"{where}: its value is of partition {header['part']} block {header['block']}")
    n = int(header["n"])
    try:
        body = memoryview(lz4.block.decompress(payload, uncompressed_size=int(header["raw"])))
    except lz4.block.LZ4BlockError as exc:
        raise CheckpointError(f"{where} truncated or damaged: {exc}") from exc
    meta_end = _U32.size + (_U32.unpack_from(body)[0] if len(body) >= _U32.size else 0)
    try:
        members = orjson.loads(body[_U32.size:meta_end])
        names, extras = members["names"], members["extras"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{where}: members unreadable ({exc!r})") from exc
    if len(names) != n or len(extras) != n or len(body) < meta_end + n * _ORDINAL.itemsize:
        raise CheckpointError(f"{where} truncated: {n} members, {len(names)} names, {len(extras)} extras")
    ordinals = np.frombuffer(body, _ORDINAL, n, meta_end)
    size = layout.block_size
    if n and bool(np.any(ordinals // size != block)):
        raise CheckpointLayoutError(f"{where} holds ordinals outside block {block} of size {size}. {RESET_ADVICE}")
    rows, end = _read_arrays(body, layout.slots, n, meta_end + n * _ORDINAL.itemsize)
    if end != len(body):
        raise CheckpointError(f"{where}: {len(body) - end} unexpected trailing bytes")
    return BlockRecord(store, part, block, int(header["seq"]), ordinals, [str(x) for x in names], rows, extras)


@dataclass(frozen=True)
class Marker:
    """End of one partition's checkpoint: what the state of partition ``part`` reflects."""

    part: int
    seq: int
    base_seq: int  # block records below it are void (the state was reset at this seq)
    next_offset: int  # the state reflects every input message of ``part`` before this offset
    rows: dict[str, dict[str, np.ndarray]]  # store -> row of every per-partition array
    layouts: dict[str, StoreLayout] = field(default_factory=dict)
    # The worker's own small state that belongs to no partition (Detector.worker_state: the model
    # first-seen map), JSON; written in every marker, merged on restore. Absent in older markers: {}.
    worker: dict[str, Any] = field(default_factory=dict)


def encode_marker(marker: Marker) -> bytes:
    stores = {name: {"slots": [[n, d, list(s)] for n, d, s in lay.slots],
                     "partitions": [[n, d, list(s)] for n, d, s in lay.partitions]}
              for name, lay in marker.layouts.items()}
    header = {"part": marker.part, "seq": marker.seq, "base_seq": marker.base_seq,
              "next_offset": marker.next_offset, "stores": stores, "worker": marker.worker}
    payload = [b for name, lay in marker.layouts.items() for b in _rows_bytes(marker.rows[name], lay.partitions)]
    return _pack(KIND_MARKER, header, payload)


def move_marker(value: bytes, next_offset: int) -> bytes:
    """The same marker (seq, rows, layouts, format version) with another next input offset."""
    header, payload, version = _unpack(value, KIND_MARKER, any_version=True)
    header["next_offset"] = next_offset
    return _pack(KIND_MARKER, header, [bytes(payload)], version)


def _layout_from_json(items: list[list[Any]]) -> ArrayLayout:
    return tuple((str(n), str(d), tuple(int(x) for x in s)) for n, d, s in items)


def marker_header(value: bytes) -> dict[str, Any]:
    """The header (``seq``, ``base_seq``, ``next_offset``, …) of a marker of any format version."""
    return _unpack(value, KIND_MARKER, any_version=True)[0]


def decode_marker(value: bytes, layouts: Mapping[str, StoreLayout]) -> Marker:
    """A marker, checked against this worker's ``layouts``.

    Stores the worker does not have are skipped; stores the marker lacks get no
    partition rows (the worker's fresh values stand). Raises CheckpointLayoutError,
    describing the difference, when a common store's arrays differ.
    """
    header, payload, _ = _unpack(value, KIND_MARKER)
    at = 0
    rows: dict[str, dict[str, np.ndarray]] = {}
    written: dict[str, StoreLayout] = {}
    for name, lay in header["stores"].items():
        was = StoreLayout(_layout_from_json(lay["slots"]), _layout_from_json(lay["partitions"]))
        written[name] = was
        part_rows, at = _read_arrays(payload, was.partitions, 1, at)
        now = layouts.get(name)
        if now is None:
            continue
        for what, old, new in (("slot", was.slots, now.slots), ("partition", was.partitions, now.partitions)):
            if old != new:
                raise CheckpointLayoutError(
                    f"the checkpoint of partition {header['part']} was written with other {name} {what} arrays "
                    f"than this worker's ({describe_layout_change(old, new)}). {RESET_ADVICE}")
        rows[name] = {k: v[0] for k, v in part_rows.items()}
    worker = header.get("worker") or {}
    if not isinstance(worker, dict):
        raise CheckpointError(f"the checkpoint of partition {header['part']}: worker state is not an object")
    return Marker(int(header["part"]), int(header["seq"]), int(header["base_seq"]), int(header["next_offset"]),
                  rows, written, worker)


# --- choosing the valid records of one partition -------------------------------------------

@dataclass
class ChosenState:
    """The valid state of one partition, chosen from its state-topic records."""

    part: int
    marker: bytes | None  # the last marker's value; None when the partition has no checkpoint
    blocks: dict[bytes, bytes]  # block key -> the value of its valid record
    rewrite: list[bytes]  # keys whose latest record is an orphan but an older one is valid
    tombstones: list[bytes]  # keys with records but no valid state (orphans only, or reset)
    max_seq: int  # largest seq in the partition, orphans included
    records: int  # records read


class PartitionLog:
    """Feed one state partition's records in offset order (``add``), then ``chosen()``.

    Memory: the latest valid record per block, plus the records of at most the
    checkpoints written since the last marker (normally one).
    """

    def __init__(self, part: int) -> None:
        self.part = part
        self._entries: dict[bytes, list[tuple[int, bytes]]] = {}
        self._pending: set[bytes] = set()  # keys with unconfirmed or superseded entries
        self._marker: bytes | None = None
        self._marker_seq = 0
        self._base_seq = 0
        self.max_seq = 0
        self.records = 0

    def add(self, key: bytes | None, value: bytes | None) -> None:
        """One record, in offset order. Raises CheckpointError on a record it cannot read."""
        self.records += 1
        if key is None:
            raise CheckpointError(f"state partition {self.part}: a record without a key")
        if is_marker_key(key):
            if value is None:
                return  # a deleted marker: the blocks then have no confirmation
            header = marker_header(value)
            self._marker, self._marker_seq, self._base_seq = value, int(header["seq"]), int(header["base_seq"])
            self.max_seq = max(self.max_seq, self._marker_seq)
            self._confirm(self._marker_seq)
            return
        if value is None:
            self._entries.pop(key, None)
            self._pending.discard(key)
            return
        seq = peek_seq(value)
        self.max_seq = max(self.max_seq, seq)
        self._entries.setdefault(key, []).append((seq, value))
        self._pending.add(key)

    def _confirm(self, seq: int) -> None:
        settled = []
        for key in self._pending:
            entries = self._entries[key]
            last_valid = max((i for i, (s, _) in enumerate(entries) if s <= seq), default=-1)
            if last_valid > 0:
                del entries[:last_valid]  # older records are superseded for good
            if len(entries) == 1 and entries[0][0] <= seq:
                settled.append(key)
        self._pending.difference_update(settled)

    def chosen(self) -> ChosenState:
        blocks: dict[bytes, bytes] = {}
        rewrite: list[bytes] = []
        tombstones: list[bytes] = []
        lo, hi = self._base_seq, self._marker_seq
        for key, entries in self._entries.items():
            valid = [v for s, v in entries if lo <= s <= hi]
            if valid:
                blocks[key] = valid[-1]
                if entries[-1][0] > hi:
                    rewrite.append(key)
            else:
                tombstones.append(key)
        return ChosenState(self.part, self._marker, blocks, rewrite, tombstones, self.max_seq, self.records)
