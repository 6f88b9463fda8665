"""The model first-seen map (decode.model_release), the new-model flag and the new_model_pivot signal."""

from __future__ import annotations

import numpy as np
import orjson
import pytest

from pipeline.decode.json_events import DecodedBatch
from pipeline.decode.model_release import MAX_MODELS, NEW_AFTER_MS, NEW_FOR_MS, NO_TIME, ModelReleases
from pipeline.detect.detector import Detector, new_model_flags
from pipeline.kernels import layout as L
from pipeline.settings import load_settings
from tests.support.alerting import page_threshold
from tests.support.events import MINIMAL
from tests.support.state import decode

T0 = 1_770_888_600_000
H = 3_600_000


def _observe(releases: ModelReleases, calls: list[tuple[str, int]], status: int = 200) -> list[bool]:
    models = [m for m, _ in calls]
    ts = np.array([t for _, t in calls], np.int64)
    return releases.observe(models, ts, np.full(len(calls), status, np.uint16)).tolist()


def test_models_in_use_at_the_start_are_not_new_and_a_later_one_is() -> None:
    r = ModelReleases()
    assert _observe(r, [("old", T0), ("other", T0 + 10)]) == [False, False]
    assert _observe(r, [("old", T0 + 2 * H), ("old2", T0 + NEW_AFTER_MS - 1)]) == [False, False]  # under 1 h in
    assert _observe(r, [("fresh", T0 + 2 * H), ("old", T0 + 2 * H + 1)]) == [True, False]
    assert r.new_since("fresh") == T0 + 2 * H and r.new_since("old") == NO_TIME
    # new for NEW_FOR_MS after its first call, then it is just a model
    assert _observe(r, [("fresh", T0 + 2 * H + NEW_FOR_MS - 1), ("fresh", T0 + 2 * H + NEW_FOR_MS)]) == [True, False]


def test_the_first_batch_of_a_replay_sets_the_origin_whatever_its_order() -> None:
    r = ModelReleases()
    # a replay's first batch, out of order: every model in it was in use from the start
    assert _observe(r, [("b", T0 + 30 * 60_000), ("a", T0 + 5), ("b", T0)]) == [False, False, False]
    assert r.origin == T0 and r.first_seen == {"a": T0 + 5, "b": T0}


def test_late_events_move_first_seen_earlier_and_can_make_a_model_old() -> None:
    r = ModelReleases()
    _observe(r, [("base", T0)])
    assert _observe(r, [("m", T0 + 3 * H)]) == [True]
    # a late call on m, 30 min earlier: first seen is the minimum; still 2.5 h after the origin
    assert _observe(r, [("m", T0 + 3 * H - 30 * 60_000), ("m", T0 + 3 * H + 1)]) == [True, True]
    assert r.first_seen["m"] == T0 + 3 * H - 30 * 60_000
    # a later first-seen never replaces an earlier one
    _observe(r, [("m", T0 + 5 * H)])
    assert r.first_seen["m"] == T0 + 3 * H - 30 * 60_000
    # a late call on m from the first half hour: m was in use from the start after all
    assert _observe(r, [("m", T0 + 30 * 60_000)]) == [False]
    assert _observe(r, [("m", T0 + 5 * H)]) == [False]


def test_a_skewed_clock_does_not_move_the_origin_and_failed_calls_do_not_register_a_model() -> None:
    r = ModelReleases()
    _observe(r, [("base", T0 + 10 * H)])
    _observe(r, [("base", T0)])  # ten hours behind the newest event: no new origin
    assert r.origin == T0 + 10 * H
    assert _observe(r, [("typo-model", T0 + 12 * H)], status=404) == [False]
    assert "typo-model" not in r.first_seen
    assert _observe(r, [("m", T0 + 12 * H)]) == [True]


def test_the_map_is_bounded() -> None:
    r = ModelReleases()
    _observe(r, [(f"m{i}", T0) for i in range(MAX_MODELS)])
    assert _observe(r, [("one-too-many", T0 + 2 * H)]) == [False]
    assert len(r.first_seen) == MAX_MODELS


def test_checkpoint_round_trip_and_merge_by_minimum() -> None:
    r = ModelReleases()
    _observe(r, [("base", T0)])
    _observe(r, [("m", T0 + 2 * H)])
    restored = ModelReleases()
    restored.merge_json(orjson.loads(orjson.dumps(r.as_json())))  # as the marker header stores it
    assert restored.as_json() == r.as_json()
    assert _observe(restored, [("m", T0 + 3 * H)]) == [True]
    # a worker that started late (it saw m from its own start) learns m is new from the checkpoint
    late_starter = ModelReleases()
    assert _observe(late_starter, [("m", T0 + 2 * H + 5), ("base", T0 + 2 * H)]) == [False, False]
    late_starter.merge_json(r.as_json())
    assert late_starter.origin == T0 and late_starter.first_seen["m"] == T0 + 2 * H
    assert _observe(late_starter, [("m", T0 + 3 * H)]) == [True]
    empty = ModelReleases()
    empty.merge_json({})  # a marker without worker state
    assert empty.as_json() == {"origin": None, "newest": None, "first_seen": {}}


def _batch(events: list[dict]) -> DecodedBatch:
    values = [orjson.dumps(e) for e in events]
    n = len(values)
    return decode(values, [None] * n, [0] * n, list(range(n)))


def _calls(account: str, start: int, n: int, every_ms: int, **fields: object) -> list[dict]:
    return [{**MINIMAL, "event_id": f"{account}-{start}-{i}", "ts": start + i * every_ms, "account_id": account,
             **fields} for i in range(n)]


def test_new_model_flags_set_bit_9_of_the_uint16_flags() -> None:
    releases = ModelReleases()
    first = _batch(_calls("a", T0, 3, 1000, model="frontier-large"))
    assert new_model_flags(releases, first).tolist() == [0, 0, 0]
    later = _batch(_calls("a", T0 + 2 * H, 2, 1000, model="frontier-next")
                   + _calls("a", T0 + 2 * H, 1, 1000, model="frontier-large"))
    flags = new_model_flags(releases, later)
    assert flags.dtype == np.uint16 and L.FLAG_NEW_MODEL > 255
    assert flags.tolist() == [L.FLAG_NEW_MODEL, L.FLAG_NEW_MODEL, 0]


def _pivot_run(prompt_tokens: int, completion_tokens: int, reasoning_tokens: int) -> tuple[Detector, object]:
    """A few calls on frontier-large (the worker's origin), two hours later 80% of the calls on a new model."""
    det = Detector(load_settings(), n_partitions=1)
    det.process(_batch(_calls("org-x", T0, 20, 60_000, model="frontier-large")))
    start = T0 + 2 * H
    n = 900  # 30 minutes at one call every two seconds: past the volume gate
    calls = _calls("org-x", start, n, 2000, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                   reasoning_tokens=reasoning_tokens)
    for i, call in enumerate(calls):
        call["model"] = "frontier-large" if i % 5 == 0 else "frontier-next"
    return det, det.process(_batch(calls), force_close=True)


def test_a_harvest_moved_to_a_new_model_scores_and_an_early_adopter_does_not() -> None:
    det, out = _pivot_run(prompt_tokens=240, completion_tokens=700, reasoning_tokens=1500)
    weight = det.config.signals["new_model_pivot"].weight
    share = out.scores.features["new_model_share"]  # type: ignore[attr-defined]
    points = out.scores.contributions[:, out.scores.names.index("new_model_pivot")]  # type: ignore[attr-defined]
    assert share[-1] == pytest.approx(0.8, abs=0.01)
    assert points[-1] == pytest.approx(weight, rel=0.02)  # 80% of calls on the new model, take ~9: full weight
    assert "new_model_pivot" in out.scores.top_signals[-1]  # type: ignore[attr-defined]
    # a chat app moving as fast but sending more than it takes (take ratio ~0.8): no points
    _, adopter = _pivot_run(prompt_tokens=450, completion_tokens=320, reasoning_tokens=40)
    assert adopter.scores.features["new_model_share"][-1] == pytest.approx(0.8, abs=0.01)  # type: ignore[attr-defined]
    assert adopter.scores.contributions[:, adopter.scores.names.index("new_model_pivot")].max() == 0.0  # type: ignore[attr-defined]
    # evidence that adds to others: alone it does not page
    assert weight < page_threshold()


def test_detector_worker_state_round_trips() -> None:
    det, _ = _pivot_run(prompt_tokens=240, completion_tokens=700, reasoning_tokens=1500)
    state = orjson.loads(orjson.dumps(det.worker_state()))
    fresh = Detector(load_settings(), n_partitions=1)
    fresh.load_worker_state(state)
    assert fresh.models.as_json() == det.models.as_json()
    assert fresh.models.new_since("frontier-next") == T0 + 2 * H + 2000  # call 0 is on frontier-large
    fresh.load_worker_state({})  # an older marker: nothing to merge
    assert fresh.models.new_since("frontier-next") == T0 + 2 * H + 2000
