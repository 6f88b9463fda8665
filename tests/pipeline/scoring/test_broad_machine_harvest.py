"""The broad_machine_harvest signal: a metronome over many topic areas, keeping a good part of what it sends."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.scoring import load_scoring_config, score_frames
from pipeline.scoring.model import ramp
from tests.support.alerting import page_threshold
from tests.support.flag_frames import T0, flagged_frames

N = 600  # ten minutes at one call a second


def _scores(topics: int, prompt: int, completion: int, *, poisson: bool = False) -> tuple[float, float, dict]:
    """The last frame's points from the signal, its score and features: ``N`` calls over ``topics`` topic buckets
    in turn, each sending ``prompt`` tokens and receiving ``completion``; a metronome, or random arrivals."""
    columns: dict[str, object] = {"topic_hash": 8 + np.arange(N) % topics, "prompt_tokens": prompt,
                                  "completion_tokens": completion}
    if poisson:
        columns["ts_ms"] = T0 + np.cumsum(np.random.default_rng(5).exponential(1000, N)).astype(np.int64)
    scores = score_frames(flagged_frames(np.zeros(N, np.uint16), 1000, **columns), load_scoring_config())
    points = float(scores.contributions[-1, scores.names.index("broad_machine_harvest")])
    return points, float(scores.score[-1]), {k: float(v[-1]) for k, v in scores.features.items()}


def test_a_scraper_over_many_topics_keeping_answers_gets_the_signal_and_pages_with_one_more() -> None:
    # Varied seed 12's missed programmatic_scraper kept 42% of what it sent (machine_regularity wants 30-80%).
    signal = load_scoring_config().signals["broad_machine_harvest"]
    points, score, features = _scores(topics=6, prompt=500, completion=200)
    assert features["topic_entropy"] == pytest.approx(np.log2(6), abs=0.01)
    assert features["gap_cv"] < 0.01 and features["take_ratio"] == pytest.approx(0.4)
    strength = np.prod([ramp(features[f], r) for f, r in signal.ramps.items()])
    assert strength == pytest.approx(1.0) and points == pytest.approx(signal.weight, rel=0.01)
    assert points < page_threshold() <= score  # never pages alone: here machine_regularity adds the rest


@pytest.mark.parametrize("case, topics, prompt, poisson", [
    ("one task (a batch job)", 1, 500, False),
    ("two topic areas", 2, 500, False),
    ("a digest: keeps a tenth of what it sends", 6, 2000, False),
    ("people and apps: random arrivals", 6, 500, True),
])
def test_machine_pipelines_and_people_get_nothing_from_it(case: str, topics: int, prompt: int, poisson: bool) -> None:
    points, score, _ = _scores(topics=topics, prompt=prompt, completion=200, poisson=poisson)
    assert points == 0.0, case
    assert score < page_threshold(), case
