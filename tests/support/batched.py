"""DWB1 container helpers shared by the batched decoder's tests: decode one message, compare decoded rows."""

from __future__ import annotations

import numpy as np

from pipeline.decode.batched import decode_batched_message
from pipeline.decode.json_events import DecodedBatch

FAR_FUTURE = 4_102_444_800_000  # 2100-01-01: no event is "in the future"


def decode_one(value: bytes, *, partition: int = 2, offset: int = 77, max_ts_ms: int = FAR_FUTURE,
               max_bytes: int = 65_536) -> DecodedBatch:
    return decode_batched_message(value, b"key", partition, offset, max_message_bytes=max_bytes, max_ts_ms=max_ts_ms)


def assert_same_rows(got: DecodedBatch, want: DecodedBatch) -> None:
    assert got.account_ids == want.account_ids
    assert got.kernel.keys() == want.kernel.keys()
    for name, column in want.kernel.items():
        assert got.kernel[name].dtype == column.dtype, name
        assert np.array_equal(got.kernel[name], column), name
    assert got.raw.keys() == want.raw.keys()
    for name, column in want.raw.items():
        mine = got.raw[name]
        if isinstance(column, np.ndarray):
            assert isinstance(mine, np.ndarray) and mine.dtype == column.dtype, name
            assert np.array_equal(mine, column, equal_nan=column.dtype.kind == "f"), name
        else:
            assert list(mine) == list(column), name
