"""The bulk_reasoning_harvest signal: millions of tokens an hour of answers to fresh prompts asking for reasoning."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.kernels import layout as L
from pipeline.scoring import load_scoring_config, score_frames
from pipeline.scoring.model import ramp
from tests.support.alerting import page_threshold
from tests.support.flag_frames import T0, flagged_frames

N = 1200  # twenty minutes at one call a second
_PROMPTS = np.random.default_rng(14).integers(1, 2**64 - 1, N, dtype=np.uint64)  # prompt hashes, all 64 bits


def _scores(*, share: float = 0.45, taken: int = 3000, distinct: int = N, busy_minutes: int = 5,
            ) -> tuple[float, float, dict[str, float]]:
    """The last frame's points from the signal, its score and features: ``N`` calls, ``share`` of them (spread
    evenly) asking for reasoning, each taking ``taken`` tokens (answer and reasoning) for a 300-token prompt,
    over ``distinct`` prompts, active in ``busy_minutes`` of every five."""
    i = np.arange(N)
    asks = np.floor((i + 1) * share) > np.floor(i * share)
    minute, second = divmod(i, 60)
    # An idle stretch skips whole minutes: the same calls, ``5 - busy_minutes`` minutes later per five.
    ts = T0 + (minute + (minute // busy_minutes) * (5 - busy_minutes)) * 60_000 + second * 1000
    frames = flagged_frames(np.where(asks, L.FLAG_REASONING, 0), 1000, ts_ms=ts, prompt_tokens=300,
                            completion_tokens=taken // 3, reasoning_tokens=taken - taken // 3,
                            prompt_hash=_PROMPTS[i % distinct])
    scores = score_frames(frames, load_scoring_config())
    points = float(scores.contributions[-1, scores.names.index("bulk_reasoning_harvest")])
    return points, float(scores.score[-1]), {k: float(v[-1]) for k, v in scores.features.items()}


def test_a_bulk_harvest_of_reasoning_gets_the_signal_and_pages_with_reasoning_elicitation() -> None:
    # Varied seed 14's model_pivot accounts before the release: 1,000-6,000 calls an hour, reasoning on 33-46%
    # of them, 2-6M tokens taken an hour, every prompt new; four of the six scored 30-51 for hours.
    signal = load_scoring_config().signals["bulk_reasoning_harvest"]
    points, score, features = _scores()
    assert features["taken_1h"] == pytest.approx(features["calls_1h"] * 3000, rel=1e-6)  # the hour's decayed sums
    assert features["taken_1h"] > 3_000_000
    assert features["reasoning_share"] == pytest.approx(0.45, abs=0.01)
    assert features["prompt_diversity"] > 0.95 and features["active_share_5m"] == 1.0
    strength = np.prod([ramp(features[f], r) for f, r in signal.ramps.items()])
    assert strength == pytest.approx(1.0) and points == pytest.approx(signal.weight, rel=1e-3)
    assert points < page_threshold() <= score  # never pages alone: reasoning_elicitation adds the rest


@pytest.mark.parametrize("case, kwargs", [
    ("a benchmark run: under a million tokens in its hour", {"taken": 700}),
    ("an app whose users rarely ask for reasoning", {"share": 0.15}),
    ("a pipeline sending the same few prompts again", {"distinct": 40}),
    ("a batch job: busy two minutes in five", {"busy_minutes": 2}),
])
def test_what_falls_short_on_one_count_gets_nothing(case: str, kwargs: dict[str, int | float]) -> None:
    points, _, _ = _scores(**kwargs)  # type: ignore[arg-type]
    assert points == 0.0, case


def test_half_way_up_the_take_gives_about_half_the_weight() -> None:
    signal = load_scoring_config().signals["bulk_reasoning_harvest"]
    points, _, features = _scores(taken=1700)  # 1.75M tokens in the hour: half-way from 1M to 2.5M
    assert features["taken_1h"] == pytest.approx(1.75e6, rel=0.01)
    assert 0.45 * signal.weight < points < 0.55 * signal.weight
