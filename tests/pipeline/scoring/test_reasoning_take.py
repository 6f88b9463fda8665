"""The reasoning_take signal: a large take with reasoning on a fair share of calls, from the hour windows."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.kernels import layout as L
from pipeline.scoring import load_scoring_config, score_frames
from pipeline.scoring.model import ramp
from pipeline.state.frames import ClosedFrames
from tests.support.flag_frames import flagged_frames


def _frames(reasoning_share: float, prompt: int, completion: int, reasoning: int, n: int = 1200) -> ClosedFrames:
    """Twenty minutes at one call a second; ``reasoning_share`` of them (spread evenly) ask for reasoning.
    Every call carries the same token counts, so the take is ``(completion + reasoning) / prompt``."""
    i = np.arange(n)
    asks = np.floor((i + 1) * reasoning_share) > np.floor(i * reasoning_share)
    return flagged_frames(np.where(asks, L.FLAG_REASONING, 0), 1000, prompt_tokens=prompt,
                          completion_tokens=completion, reasoning_tokens=reasoning)


@pytest.mark.parametrize("share, prompt, completion, reasoning, expected", [
    (0.45, 240, 650, 2500, "full"),  # a campaign before its pivot: reasoning on 45% of calls, taking 13x
    (0.3, 240, 650, 1510, "part"),  # half-way up both ramps: 30% reasoning, taking 9x
    (0.12, 120, 1400, 100, "none"),  # a non-English app: long answers (12.5x) without asking for reasoning
    (0.35, 600, 250, 1500, "none"),  # an evaluation harness: reasons, but takes about 3x its prompts
    (0.6, 400, 150, 20, "none"),  # asks for reasoning but takes less than it sends
])
def test_the_signal_needs_a_large_take_and_reasoning(share: float, prompt: int, completion: int, reasoning: int,
                                                     expected: str) -> None:
    config = load_scoring_config()
    signal = config.signals["reasoning_take"]
    scores = score_frames(_frames(share, prompt, completion, reasoning), config)
    points = float(scores.contributions[-1, scores.names.index("reasoning_take")])
    got_share, take = scores.features["reasoning_share"][-1], scores.features["take_ratio"][-1]
    assert got_share == pytest.approx(share, abs=0.01)
    assert take == pytest.approx((completion + reasoning) / prompt, rel=1e-6)
    strength = np.prod([ramp(scores.features[f][-1], r) for f, r in signal.ramps.items()])
    assert points == pytest.approx(signal.weight * strength, abs=1e-3)
    assert {"full": points == pytest.approx(signal.weight), "none": points == 0.0,
            "part": 0.15 * signal.weight < points < 0.35 * signal.weight}[expected]


def test_a_handful_of_calls_is_not_a_share() -> None:
    # A person's six calls in an hour, three of them long reasoning answers: the volume gate passes on the
    # tokens taken, but a share over six calls is noise (a hobbyist of varied seed 12 read 0.5 and 150x).
    config = load_scoring_config()
    scores = score_frames(_frames(0.5, 100, 900, 3000, n=6), config)
    assert scores.features["take_ratio"][-1] > 12 and scores.features["reasoning_share"][-1] >= 0.4
    assert scores.contributions[:, scores.names.index("reasoning_take")].max() == 0.0


def test_the_signal_does_not_page_alone() -> None:
    config = load_scoring_config()
    assert config.signals["reasoning_take"].weight < 70
    assert set(config.signals["reasoning_take"].ramps) == {"take_ratio", "reasoning_share", "calls_1h"}
