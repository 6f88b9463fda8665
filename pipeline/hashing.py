"""Hashes that must agree across processes, runs and clients (Python's ``hash`` is salted per process)."""

from __future__ import annotations

import hashlib
from functools import lru_cache

from kafka.partitioner.default import murmur2

from schemas.prompt_hashing import blake2b64 as blake2b64  # the one definition: a stable 64-bit string hash

PARTITION_CACHE_KEYS = 100_000  # keys remembered: traffic repeats a bounded set of accounts


@lru_cache(maxsize=PARTITION_CACHE_KEYS)  # murmur2 is pure Python in kafka-python (5 s of a 443k-line replay)
def kafka_partition(key: bytes, n_partitions: int) -> int:
    """Partition of a keyed message under Kafka's default partitioner (Java client and kafka-python)."""
    return (murmur2(key) & 0x7FFFFFFF) % n_partitions


def stable_id(*parts: object, size: int) -> str:
    """Hex BLAKE2b digest (``size`` bytes) of the parts joined by the unit separator: an id that is the same
    in every process and run for the same parts (alert keys, notification ids, feedback ids, cluster ids)."""
    return hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=size).hexdigest()
