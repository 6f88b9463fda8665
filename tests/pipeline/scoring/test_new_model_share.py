"""new_model_share from the windows, and the new_model_pivot signal's gate on what the account takes."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.kernels import layout as L
from pipeline.scoring import load_scoring_config, score_frames
from pipeline.scoring.features import compute_features
from pipeline.state.frames import ClosedFrames
from tests.support.flag_frames import flagged_frames


def _frames(new_share: float, prompt: int, completion: int, reasoning: int = 0, n: int = 1200) -> ClosedFrames:
    """Twenty minutes at one call a second, ``new_share`` of them (spread evenly) on a new model."""
    i = np.arange(n)
    new = np.floor((i + 1) * new_share) > np.floor(i * new_share)
    return flagged_frames(np.where(new, L.FLAG_NEW_MODEL, 0), 1000, prompt_tokens=prompt,
                          completion_tokens=completion, reasoning_tokens=reasoning)


def test_share_is_the_ratio_of_the_five_minute_windows() -> None:
    # a move is a change: the share over the last few minutes, not the hour (which holds the calls before it)
    frames = _frames(0.7, 200, 600)
    share = compute_features(frames, ["new_model_share"])["new_model_share"]
    w5 = frames.windows[:, L.W5].astype(np.float64)
    assert share == pytest.approx(w5[:, L.NEW_MODEL_CALLS] / w5[:, L.CALLS], rel=1e-12)
    assert share[-1] == pytest.approx(0.7, abs=0.01)


@pytest.mark.parametrize("share, prompt, completion, reasoning, expected", [
    (0.9, 240, 650, 1500, "full"),  # a campaign on the new model taking ~9x what it sends
    (0.65, 240, 650, 1500, "part"),  # half-way up the share ramp (0.5 -> 0.8)
    (0.9, 240, 400, 0, "part"),  # taking 1.7x: part of the take gate (1.2 -> 4.0)
    (0.9, 450, 320, 40, "none"),  # an early adopter: as fast a move, a chat app's take (0.8)
    (0.9, 4000, 220, 300, "none"),  # a summariser on the new model: takes a tenth of what it sends
    (0.3, 240, 650, 1500, "none"),  # an extractor trying the new model on a few calls
])
def test_the_signal_needs_a_high_share_and_an_extractors_take(share: float, prompt: int, completion: int,
                                                              reasoning: int, expected: str) -> None:
    config = load_scoring_config()
    weight = config.signals["new_model_pivot"].weight
    scores = score_frames(_frames(share, prompt, completion, reasoning), config)
    points = float(scores.contributions[-1, scores.names.index("new_model_pivot")])
    got_share, take = scores.features["new_model_share"][-1], scores.features["take_ratio"][-1]
    assert got_share == pytest.approx(share, abs=0.03)
    assert take == pytest.approx((completion + reasoning) / prompt, rel=1e-6)
    strength = np.clip((got_share - 0.5) / 0.3, 0, 1) * np.clip((take - 1.2) / 2.8, 0, 1)  # the two ramps
    assert points == pytest.approx(weight * strength, abs=1e-3)
    assert {"full": points == pytest.approx(weight), "none": points == 0.0, "part": 0 < points < weight}[expected]


def test_the_signal_does_not_page_alone() -> None:
    config = load_scoring_config()
    assert config.signals["new_model_pivot"].weight < 70
    assert set(config.signals["new_model_pivot"].ramps) == {"new_model_share", "take_ratio"}
