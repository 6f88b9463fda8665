"""decode_isolating: a message the decoder raises on becomes a reject; the others keep their rows and order."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from pipeline.decode.isolate import DECODER_ERROR, decode_isolating
from pipeline.decode.json_events import DecodedBatch, decode_json_batch
from tests.support.events import MINIMAL


def fragile(values: Sequence[bytes], keys: Sequence[bytes | None], partitions: Sequence[int],
            offsets: Sequence[int]) -> DecodedBatch:
    if any(b"boom" in v for v in values):
        raise RecursionError("decoder bug")
    return decode_json_batch(values, keys, partitions, offsets, max_message_bytes=65_536, max_ts_ms=2**62)


def event(event_id: str) -> bytes:
    return orjson.dumps({**MINIMAL, "event_id": event_id})


def test_rows_around_a_poison_message_keep_their_order() -> None:
    values = [event("a"), event("boom"), b"not json", event("b")]
    got = decode_isolating(fragile, values, [None] * 4, [0] * 4, [10, 11, 12, 13])
    assert got.raw["event_id"] == ["a", "b"]
    assert [(r.offset, r.reason) for r in got.rejects] == [(11, DECODER_ERROR), (12, "invalid_json")]
    assert "RecursionError: decoder bug" in got.rejects[0].detail


def test_a_batch_of_poison_only_has_the_decoders_empty_columns() -> None:
    got = decode_isolating(fragile, [event("boom1"), event("boom2")], [None, None], [1, 1], [5, 6])
    empty = decode_json_batch([], [], [], [], max_message_bytes=1, max_ts_ms=0)
    assert len(got) == 0 and [r.offset for r in got.rejects] == [5, 6]
    assert {k: v.dtype for k, v in got.kernel.items()} == {k: v.dtype for k, v in empty.kernel.items()}
    assert got.raw.keys() == empty.raw.keys()
