"""Decode a fetched batch of one-JSON-event-per-message values into columns.

Pure: bytes in, ``DecodedBatch`` out. The contract is the pydantic model
(``schemas.event.ApiCallEvent``); every message either becomes one row of the
columns or one ``Rejected`` with a field-level reason. Nothing is dropped.

``decode_json_batch`` takes the fast path (``fast_json``: a Numba scanner, with
pydantic for whatever the scanner does not decide with certainty); its result is
the same as ``decode_json_batch_pydantic`` (the model applied message by message)
for every input.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline.decode.batch import DecodedBatch
from pipeline.decode.fast_json import PathCounts, decode_json_batch_fast, warm_up
from pipeline.decode.pydantic_path import decode_json_batch_pydantic

__all__ = [
    "DecodedBatch",
    "PathCounts",
    "decode_json_batch",
    "decode_json_batch_pydantic",
    "path_counts",
    "warm_up",
]

# Since start: how messages were decided (a rise in fallbacks means a producer
# sends something the scanner leaves to pydantic, and throughput drops).
path_counts = PathCounts()


def decode_json_batch(
    values: Sequence[bytes],
    keys: Sequence[bytes | None],
    partitions: Sequence[int],
    offsets: Sequence[int],
    *,
    max_message_bytes: int,
    max_ts_ms: int,
) -> DecodedBatch:
    """Validate and columnise a batch; ``max_ts_ms`` is the latest acceptable event time."""
    batch, counts = decode_json_batch_fast(values, keys, partitions, offsets, max_message_bytes=max_message_bytes,
                                           max_ts_ms=max_ts_ms)
    path_counts.add(counts)
    return batch
