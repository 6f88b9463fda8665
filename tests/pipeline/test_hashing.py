"""The shared hashes: where Kafka puts a keyed message, and stable string digests."""

from __future__ import annotations

import pytest
from aiokafka.partitioner import DefaultPartitioner

from pipeline.hashing import PARTITION_CACHE_KEYS, blake2b64, kafka_partition


@pytest.mark.parametrize(("key", "partition"), [
    (b"", 681), (b"a", 524), (b"ab", 434), (b"abc", 107), (b"123456789", 566), (b"\x00 ", 742),
])
def test_kafka_partition_matches_the_java_client(key: bytes, partition: int) -> None:
    # Partitions of 1000 chosen by org.apache.kafka's default partitioner (kafka-python's test vectors).
    assert kafka_partition(key, 1000) == partition


@pytest.mark.parametrize("n_partitions", [1, 3, 12, 64])
def test_kafka_partition_matches_aiokafka(n_partitions: int) -> None:
    partitions = list(range(n_partitions))
    for i in range(500):
        key = f"org-{i}".encode()
        assert kafka_partition(key, n_partitions) == DefaultPartitioner()(key, partitions, partitions)


def test_blake2b64_is_the_same_in_every_process() -> None:
    # Pinned: feature names (ua:…) and kernel hashes are stored and compared across runs.
    assert blake2b64("curl/8.5").hex() == "ca5306f49ba3ed7a"
    assert len(blake2b64("")) == 8


def test_kafka_partition_remembers_a_bounded_number_of_keys() -> None:
    # murmur2 is pure Python: a repeated account must be served from memory, and memory must not grow
    # with every account ever seen.
    kafka_partition.cache_clear()
    for _ in range(3):
        kafka_partition(b"org-repeated", 6)
    assert kafka_partition.cache_info().hits == 2
    assert kafka_partition.cache_info().maxsize == PARTITION_CACHE_KEYS
