"""Detector: decoded batches in; account and API-key signature rows and alerts out."""

from __future__ import annotations

import orjson

from pipeline.decode.json_events import decode_json_batch
from pipeline.detect.detector import Detector
from pipeline.settings import load_settings
from tests.support.events import MINIMAL, poisson_offsets_ms

T0 = 1_770_888_600_000


def batch(events: list[dict]) -> object:
    values = [orjson.dumps(e) for e in events]
    n = len(values)
    return decode_json_batch(values, [None] * n, [0] * n, list(range(n)), max_message_bytes=65_536,
                             max_ts_ms=10**15)


def test_rows_per_account_and_per_key_add_up() -> None:
    det = Detector(load_settings(), n_partitions=1)
    events = [
        {**MINIMAL, "event_id": f"e{i}", "ts": T0 + t, "account_id": "org-a" if i % 3 else "org-b",
         "api_key_id": f"k{i % 4}", "prompt_tokens": i}
        for i, t in enumerate(poisson_offsets_ms(300, 1000))
    ]
    out = det.process(batch(events), force_close=True)
    sig, keys = out.signatures, out.key_signatures
    assert sum(int(c) for c in sig["calls"]) == 300  # type: ignore[union-attr]
    by_key: dict[tuple[str, str], int] = {}
    for account, key, calls in zip(keys["account_id"], keys["api_key_id"], keys["calls"], strict=True):  # type: ignore[call-overload]
        by_key[(account, key)] = by_key.get((account, key), 0) + int(calls)
    expected: dict[tuple[str, str], int] = {}
    for e in events:
        k = (e["account_id"], e["api_key_id"])
        expected[k] = expected.get(k, 0) + 1
    # a key is attributed to the account it was first seen with
    first_account = {}
    for e in events:
        first_account.setdefault(e["api_key_id"], e["account_id"])
    merged: dict[tuple[str, str], int] = {}
    for (_account, key), n in expected.items():
        merged[(first_account[key], key)] = merged.get((first_account[key], key), 0) + n
    assert by_key == merged
    assert len(out.alerts) == 0  # plain traffic does not alert


def test_reasoning_harvest_alerts_with_signal_points() -> None:
    det = Detector(load_settings(), n_partitions=1)
    events = [
        {**MINIMAL, "event_id": f"h{i}", "ts": T0 + t, "account_id": "org-x", "elicits_reasoning": True,
         "prompt_tokens": 80, "completion_tokens": 2400, "reasoning_tokens": 1500,
         "prompt_hash": f"{(i + 1) * 0x9E3779B97F4A7C15 % 2**64:016x}"}
        for i, t in enumerate(poisson_offsets_ms(1500, 400))
    ]
    out = det.process(batch(events), force_close=True)
    assert len(out.alerts) == 1
    assert out.alerts.signals[0][0] == "reasoning_elicitation"
    assert out.alerts.signal_points[0][0] > 20 and sum(out.alerts.signal_points[0]) >= 70
    assert out.alerts.account_id == ["org-x"]


def test_key_tracking_can_be_turned_off() -> None:
    det = Detector(load_settings(track_api_keys=False), n_partitions=1)
    out = det.process(batch([{**MINIMAL, "event_id": "x", "ts": T0}]), force_close=True)
    assert len(out.signatures["account_id"]) == 1  # type: ignore[arg-type]
    assert len(out.key_signatures["api_key_id"]) == 0  # type: ignore[arg-type]
    assert len(det.keys) == 0


def test_parameter_stealing_probes_alert_and_label_calibration_does_not() -> None:
    # The decoder's flags say only "some logit bias"; the detector adds how wide it is and
    # whether the call asks for one or two tokens, from the decoded columns.
    det = Detector(load_settings(), n_partitions=1)
    probe = {**MINIMAL, "prompt_tokens": 40, "completion_tokens": 1, "max_tokens": 1, "logprobs": True,
             "top_logprobs": 5}
    events = [
        {**probe, "event_id": f"p{i}", "ts": T0 + i * 300, "account_id": "org-steal" if i % 2 else "org-label",
         "logit_bias_count": 200 if i % 2 else 2 + i % 9, "temperature": 0.0,
         "prompt_hash": f"{(i + 1) * 0x9E3779B97F4A7C15 % 2**64:016x}"}
        for i in range(1600)
    ]
    out = det.process(batch(events), force_close=True)
    assert out.alerts.account_id == ["org-steal"]
    assert out.alerts.signals[0][0] == "logit_stealing"
    sig = out.signatures
    assert sum(int(c) for c in sig["logit_bias_calls"]) == 1600  # type: ignore[union-attr]
