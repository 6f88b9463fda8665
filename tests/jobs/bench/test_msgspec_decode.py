"""The msgspec alternative decode_bench measures gives the scanner's exact result: figures compare like with like."""

from __future__ import annotations

import itertools

import orjson
import pytest

pytest.importorskip("msgspec")  # a bench-only dependency

from jobs.bench.msgspec_decode import EventStruct, decode_json_batch_msgspec
from jobs.loadgen import ScenarioConfig, generate
from pipeline.decode.fast_json import decode_json_batch_fast
from schemas.event import ApiCallEvent
from tests.support.decode_cases import BASES, CONTRACT_CASES, assert_same, contract_event
from tests.support.json_fuzz import messages


def _both(values: list[bytes], max_ts_ms: int = 2**62, *, whole: bool = False) -> tuple[object, object]:
    n = len(values)
    args = (values, [b"k%d" % i for i in range(n)], [i % 5 for i in range(n)], list(range(1000, 1000 + n)))
    fast, _ = decode_json_batch_fast(*args, max_message_bytes=65_536, max_ts_ms=max_ts_ms)
    return decode_json_batch_msgspec(*args, max_message_bytes=65_536, max_ts_ms=max_ts_ms, whole=whole), fast


def test_the_struct_is_derived_from_the_model() -> None:
    assert EventStruct.__struct_fields__ == tuple(ApiCallEvent.model_fields)


@pytest.mark.parametrize("whole", [False, True])
def test_loadgen_events_decode_to_the_scanners_columns(whole: bool) -> None:
    events = itertools.islice(generate(ScenarioConfig(duration_s=600, rfc3339_fraction=0.3)), 3000)
    got, expected = _both([orjson.dumps(e) for e in events], whole=whole)
    assert len(got) == 3000  # type: ignore[arg-type]
    assert_same(got, expected)  # type: ignore[arg-type]


def test_mutated_messages_give_the_scanners_rows_and_rejects() -> None:
    got, expected = _both(messages(BASES, 5000, seed=7), max_ts_ms=1_770_856_000_000)
    assert len(expected.rejects) > 500  # type: ignore[attr-defined]
    assert_same(got, expected)  # type: ignore[arg-type]


def test_contract_rows() -> None:
    assert_same(*_both([contract_event(change) for change, _, _ in CONTRACT_CASES]))  # type: ignore[arg-type]
