"""A long run of JSON events is decoded in chunks (bounded scanner memory) with the rows of one call."""

from __future__ import annotations

from itertools import islice

import numpy as np
import orjson
import pytest

from jobs.loadgen import ScenarioConfig, generate
from pipeline.decode import dispatch
from pipeline.decode.dispatch import decode_any_batch
from pipeline.decode.json_events import DecodedBatch, decode_json_batch
from tests.support.batched import FAR_FUTURE, assert_same_rows

RAW_KERNEL_VIEWS = {"ts_ms": "ts", "prompt_tokens": "prompt_tokens", "prompt_hash": "prompt_hash", "status": "status"}


def _messages() -> tuple[list[bytes], list[bytes | None], list[int], list[int]]:
    config = ScenarioConfig(seed=11, rate_eps=500, duration_s=60, rfc3339_fraction=0.2)
    values = [orjson.dumps(e) for e in islice(generate(config), 50)]
    values[7] = b"{not json"  # rejects inside the chunks and at a chunk's edge
    values[20] = orjson.dumps({"event_id": "x", "status": 700})
    values[39] = b""
    n = len(values)
    return values, [b"k%d" % i for i in range(n)], [i % 4 for i in range(n)], list(range(100, 100 + n))


def _decode(messages: tuple[list[bytes], list[bytes | None], list[int], list[int]]) -> DecodedBatch:
    return decode_any_batch(*messages, max_message_bytes=65_536, max_ts_ms=FAR_FUTURE)


def _count_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of messages of each JSON decoder call, from now on."""
    sizes: list[int] = []

    def counting(values: list[bytes], *args: object, **kwargs: object) -> DecodedBatch:
        sizes.append(len(values))
        return decode_json_batch(values, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(dispatch, "decode_json_batch", counting)
    return sizes


def test_a_run_longer_than_a_chunk_decodes_in_chunks_to_the_rows_of_one_call(
        monkeypatch: pytest.MonkeyPatch) -> None:
    messages = _messages()
    whole = decode_json_batch(*messages, max_message_bytes=65_536, max_ts_ms=FAR_FUTURE)
    sizes = _count_calls(monkeypatch)
    monkeypatch.setattr(dispatch, "JSON_CHUNK", 20)
    got = _decode(messages)
    assert sizes == [20, 20, 10]
    assert_same_rows(got, whole)
    assert [(r.offset, r.reason, r.field, r.value) for r in got.rejects] == \
        [(r.offset, r.reason, r.field, r.value) for r in whole.rejects]
    assert len(got.rejects) == 3


def test_merged_chunks_keep_the_kernel_columns_views_of_the_raw_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in one decoder call: a merged batch holds each column once."""
    monkeypatch.setattr(dispatch, "JSON_CHUNK", 16)
    got = _decode(_messages())
    for kernel, raw in RAW_KERNEL_VIEWS.items():
        assert np.shares_memory(got.kernel[kernel], got.raw[raw]), kernel


def test_a_run_within_a_chunk_is_one_call(monkeypatch: pytest.MonkeyPatch) -> None:
    sizes = _count_calls(monkeypatch)
    got = _decode(_messages())
    assert sizes == [50] and len(got) == 47
