"""client_mismatch_share from the windows, and the client_mismatch signal's ramp."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.kernels import layout as L
from pipeline.scoring import load_scoring_config, score_frames
from pipeline.scoring.features import compute_features
from pipeline.state.frames import ClosedFrames
from tests.support.flag_frames import flagged_frames


def _frames(mismatch_every: int, n: int = 600) -> ClosedFrames:
    marked = (np.arange(n) % mismatch_every == 0) if mismatch_every else np.zeros(n, bool)
    return flagged_frames(np.where(marked, L.FLAG_CLIENT_MISMATCH, 0), 400)


def test_share_is_the_ratio_of_the_hour_windows() -> None:
    frames = _frames(3)
    share = compute_features(frames, ["client_mismatch_share"])["client_mismatch_share"]
    w60 = frames.windows[:, L.W60].astype(np.float64)
    assert share == pytest.approx(w60[:, L.CLIENT_MISMATCH_CALLS] / w60[:, L.CALLS], rel=1e-12)
    assert share[-1] == pytest.approx(1 / 3, abs=0.01)


@pytest.mark.parametrize("every, expected", [(1, 1.0), (3, 0.0), (0, 0.0)])
def test_signal_needs_most_calls_to_disagree(every: int, expected: float) -> None:
    # A TLS-intercepting proxy in front of some of an organisation's browsers, or one
    # user agent switcher, is a minority of its calls: below the ramp's low end (50%).
    config = load_scoring_config()
    scores = score_frames(_frames(every), config)
    points = scores.contributions[-1, scores.names.index("client_mismatch")]
    assert points == pytest.approx(expected * config.signals["client_mismatch"].weight)
