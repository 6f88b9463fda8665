"""Hashes that must agree across processes, runs and clients (Python's ``hash`` is salted per process)."""

from __future__ import annotations

import hashlib

from kafka.partitioner.default import murmur2


def kafka_partition(key: bytes, n_partitions: int) -> int:
    """Partition of a keyed message under Kafka's default partitioner (Java client and kafka-python)."""
    return (murmur2(key) & 0x7FFFFFFF) % n_partitions


def stable_id(*parts: object, size: int) -> str:
    """Hex BLAKE2b digest (``size`` bytes) of the parts joined by the unit separator: an id that is the same
    in every process and run for the same parts (alert keys, notification ids, feedback ids, cluster ids)."""
    return hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=size).hexdigest()


def blake2b64(text: str) -> bytes:
    """8-byte BLAKE2b digest of ``text``'s UTF-8 bytes: a stable 64-bit hash of a string."""
    return hashlib.blake2b(text.encode(), digest_size=8).digest()
