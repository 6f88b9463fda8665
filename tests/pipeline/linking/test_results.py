from __future__ import annotations

import orjson
import pytest

from pipeline.alerting.transitions import AlertTransition
from pipeline.linking.messages import MessageError
from pipeline.linking.results import LinkResult, decode_result, encode_result, split_result
from tests.support.link_results import alerts, rows


def transition(i: int, *, resolved: bool = False) -> AlertTransition:
    return AlertTransition("cluster_extraction", "resolved" if resolved else "firing",
                           {"alertname": "cluster_extraction", "account_id": f"acct-{i}", "cluster_id": "c0"},
                           {"summary": "a fleet"}, 5_000 + i, 9_000 if resolved else None, 71.5,
                           {"size": 10.0, "pay:pf_A": 3.0})


def sample(n: int = 3) -> LinkResult:
    return LinkResult(rows(n), alerts(n), [transition(i, resolved=i == 0) for i in range(n)],
                      {f"acct-{i}": ("c0" if i else "") for i in range(n)}, ["detect-1"],
                      {"observations": 12, "stage_b_s": 0.25, "cluster_alerts_by_severity": {"high": 3}})


def test_a_result_round_trips() -> None:
    r = sample()
    assert decode_result(encode_result(r)) == r
    empty = LinkResult()
    assert decode_result(encode_result(empty)) == empty and empty.is_empty() and not r.is_empty()


@pytest.mark.parametrize("value", [
    b"not json", b"[]", orjson.dumps({"v": 1, "type": "obs"}),
    orjson.dumps({**orjson.loads(encode_result(LinkResult())), "transitions": {}}),
    orjson.dumps({**orjson.loads(encode_result(sample())), "rows": {**vars(rows(2)), "size": [1]}}),
    orjson.dumps({**orjson.loads(encode_result(sample())), "transitions": [{"state": "firing"}]}),
    orjson.dumps({**orjson.loads(encode_result(sample())),
                  "transitions": [{**orjson.loads(encode_result(sample()))["transitions"][0], "state": "odd"}]}),
])
def test_malformed_results_raise_message_error(value: bytes) -> None:
    with pytest.raises(MessageError):
        decode_result(value)


def test_a_big_result_is_split_into_valid_results_that_add_up() -> None:
    r = sample(400)
    whole = len(encode_result(r))
    parts = split_result(r, max_bytes=whole // 5)
    assert len(parts) >= 5
    assert all(len(value) <= whole // 5 and decode_result(value) == part for part, value in parts)
    got = [p for p, _ in parts]
    assert [c for p in got for c in p.rows.cluster_id] == r.rows.cluster_id
    assert [a for p in got for a in p.alerts.alert_id] == r.alerts.alert_id
    assert [t for p in got for t in p.transitions] == r.transitions
    assert {k: v for p in got for k, v in p.cluster_of.items()} == r.cluster_of
    # The drain is announced once, by the last part; every part carries the stats.
    assert [p.drained_sources for p in got] == [[]] * (len(got) - 1) + [["detect-1"]]
    assert all(p.stats == r.stats for p in got)
    assert split_result(r) == [(r, encode_result(r))]
