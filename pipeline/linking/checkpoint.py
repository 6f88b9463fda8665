"""The linking process's checkpoint in ``<group>-link-state`` (1 partition, compacted). Pure: no Kafka.

A checkpoint is a generation ``g``: the whole stage state (memberships, accounts and alert state,
sync memberships, the counters per minute; links are derived) as plain JSON values, cut into
blocks of at most ``BLOCK_BYTES`` in slot ``g % 2``, then a manifest written only once every
block is acknowledged. Invariant: writing ``g`` never touches the blocks of ``g - 1``, the last
complete one; blocks without their manifest, or of another writer, are never restored.
Records and restore: docs/linking.md ("Reliability").
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import orjson

VERSION = 1
MANIFEST_KEY = "manifest"
SECTIONS = ("features", "accounts", "alerted", "sync", "minutes")  # older checkpoints: the missing ones empty
SKIPPED = ("pairs", "timing", "pooled")  # older sections, skipped on restore: derived now; two rings before ``minutes``
BLOCK_BYTES = 512 << 10
_FIRST_CHUNK = 1_000  # entries per block tried first; adapted to the entries' size as blocks are cut


class CheckpointError(RuntimeError):
    """The newest manifest names blocks the topic does not hold: the checkpoint cannot be trusted."""


def block_key(slot: int, i: int) -> str:
    return f"g{slot}:b{i}"


def offset_key(topic: str, partition: int) -> str:
    return f"{topic}:{partition}"


def parse_offset_key(key: str) -> tuple[str, int]:
    topic, _, partition = key.rpartition(":")
    return topic, int(partition)


@dataclass
class Restored:
    """The newest complete generation: stage state, input offsets to resume at, extra fields."""

    gen: int
    sections: dict[str, dict[str, Any]]
    offsets: dict[str, int]
    meta: dict[str, Any]


PART = "\x00part"  # "<key>\x00part<i>": a piece of an entry too big for one block (a hub's members)


def _split(key: str, value: Any, pieces: int) -> list[tuple[str, Any]] | None:
    """An entry cut into ``pieces`` by its biggest dict field (``key`` keeps the other fields and the first
    piece, ``key + PART + i`` the others); None when it has no such field to cut."""
    fields = [f for f, v in value.items() if isinstance(v, dict) and len(v) > 1] if isinstance(value, dict) else []
    if not fields:
        return None
    big = max(fields, key=lambda f: len(value[f]))
    items = list(value[big].items())
    step = -(-len(items) // min(pieces, len(items)))
    parts = [dict(items[i:i + step]) for i in range(0, len(items), step)]
    return [(key, {**value, big: parts[0]}), *((f"{key}{PART}{i}", {big: p}) for i, p in enumerate(parts[1:], 1))]


def _join_parts(section: dict[str, Any]) -> None:
    """Put the pieces of split entries (``_split``) back into their entry, in place."""
    for key in [k for k in section if PART in k]:
        base = key.partition(PART)[0]
        for name, piece in section.pop(key).items():
            section[base][name].update(piece)


def _fit(entries: list[tuple[str, Any]], max_bytes: int) -> Iterator[bytes]:
    data = orjson.dumps(dict(entries))
    if len(data) <= max_bytes or len(entries) == 1:
        # One entry bigger than the limit is cut by its biggest dict field (a hub of 50,000 members would be a
        # 2.5 MB record, over a broker's default 1 MB limit); one that cannot be cut stays whole.
        parts = _split(*entries[0], 2 * -(-len(data) // max_bytes)) if len(data) > max_bytes else None
        if parts is None or len(parts) == 1:
            yield data
        else:
            yield from _fit(parts, max_bytes)
        return
    half = len(entries) // 2
    yield from _fit(entries[:half], max_bytes)
    yield from _fit(entries[half:], max_bytes)


def _chunks(section: Mapping[str, Any], max_bytes: int) -> Iterator[bytes]:
    """orjson ``{key: value}`` objects of at most ``max_bytes``, sized from the entries seen so far."""
    items = iter(section.items())
    n = _FIRST_CHUNK
    while entries := list(islice(items, n)):
        datas = list(_fit(entries, max_bytes))
        yield from datas
        per_entry = sum(map(len, datas)) / len(entries)
        n = max(1, int(0.75 * max_bytes / per_entry))


def encode_blocks(sections: Mapping[str, Mapping[str, Any]], gen: int, max_bytes: int = BLOCK_BYTES,
                  writer: str = "") -> list[tuple[str, bytes]]:
    """(key, value) of every block of generation ``gen``, in its slot."""
    slot = gen % 2
    out: list[tuple[str, bytes]] = []
    for name in SECTIONS:
        for data in _chunks(sections.get(name, {}), max_bytes):
            i = len(out)
            head = orjson.dumps({"gen": gen, "w": writer, "i": i, "s": name})
            out.append((block_key(slot, i), head[:-1] + b',"d":' + data + b"}"))
    return out


def encode_manifest(gen: int, blocks: int, offsets: Mapping[str, int], meta: Mapping[str, Any],
                    writer: str = "") -> bytes:
    return orjson.dumps({"v": VERSION, "gen": gen, "w": writer, "slot": gen % 2, "blocks": blocks,
                         "offsets": dict(offsets), "meta": dict(meta)})


@dataclass
class StateLog:
    """The state topic folded to its latest value per key, as read from the start."""

    latest: dict[str, bytes] = field(default_factory=dict)

    def add(self, key: bytes | str | None, value: bytes | None) -> None:
        if key is None:
            return
        name = key.decode() if isinstance(key, bytes) else key
        if value is None:
            self.latest.pop(name, None)
        else:
            self.latest[name] = value

    def slot_blocks(self, slot: int) -> int:
        """How many block keys of ``slot`` hold a value (the tombstones a rewrite of the slot must send)."""
        prefix = f"g{slot}:b"
        return 1 + max((int(k[len(prefix):]) for k in self.latest if k.startswith(prefix)), default=-1)

    def restore(self) -> Restored | None:
        """The manifest's generation (None: no checkpoint yet); CheckpointError when its blocks are not there."""
        raw = self.latest.get(MANIFEST_KEY)
        if raw is None:
            return None
        manifest = orjson.loads(raw)
        if manifest.get("v") != VERSION:
            raise CheckpointError(f"linking checkpoint of version {manifest.get('v')!r}, expected {VERSION}")
        gen, slot, n = int(manifest["gen"]), int(manifest["slot"]), int(manifest["blocks"])
        writer = manifest.get("w", "")
        sections: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
        for i in range(n):
            value = self.latest.get(block_key(slot, i))
            block = orjson.loads(value) if value is not None else None
            mine = block is not None and (block.get("gen"), block.get("w", "")) == (gen, writer)
            if block is None or not mine or block.get("s") not in (*SECTIONS, *SKIPPED):
                found = "missing" if block is None else f"of generation {block.get('gen')} by {block.get('w')!r}"
                raise CheckpointError(f"linking checkpoint generation {gen}: block {block_key(slot, i)} is {found}")
            if block["s"] in sections:
                sections[block["s"]].update(block["d"])
        for section in sections.values():
            _join_parts(section)
        return Restored(gen, sections, {str(k): int(v) for k, v in manifest["offsets"].items()},
                        dict(manifest.get("meta") or {}))


@dataclass
class CheckpointPlan:
    """The records of one checkpoint, in the order they must be acknowledged."""

    gen: int
    blocks: list[tuple[str, bytes | None]]  # blocks, then tombstones of the slot's leftover keys
    manifest: bytes

    @property
    def bytes(self) -> int:
        return sum(len(v) for _, v in self.blocks if v is not None) + len(self.manifest)


def plan_checkpoint(sections: Mapping[str, Mapping[str, Any]], gen: int, offsets: Mapping[str, int],
                    meta: Mapping[str, Any], *, slot_blocks: int, max_bytes: int = BLOCK_BYTES,
                    writer: str = "") -> CheckpointPlan:
    """Generation ``gen``'s records; ``slot_blocks``: block keys its slot holds now (``StateLog.slot_blocks``)."""
    blocks: list[tuple[str, bytes | None]] = list(encode_blocks(sections, gen, max_bytes, writer))
    n = len(blocks)
    blocks += [(block_key(gen % 2, i), None) for i in range(n, slot_blocks)]
    return CheckpointPlan(gen, blocks, encode_manifest(gen, n, offsets, meta, writer))
