"""produce_file's partitioner: the cache must not change where a line goes."""

from __future__ import annotations

from jobs.produce_file import CachedPartitioner, account_key, partition_for


def test_cached_partitions_equal_kafkas_default_partitioner() -> None:
    lines = [b'{"account_id":"org-%d"}' % (i % 37) for i in range(500)] + [b"not json", b'{"account_id":7}']
    cached = CachedPartitioner(6)
    for counter, line in enumerate(lines * 2):  # the second pass is served from the cache
        key = account_key(line)
        assert cached(key, counter) == partition_for(key, 6, counter)


def test_lines_without_a_key_still_go_round_robin() -> None:
    cached = CachedPartitioner(4)
    assert [cached(None, n) for n in range(8)] == [0, 1, 2, 3, 0, 1, 2, 3]
