"""client_mismatch_share from the windows, and the client_mismatch signal's ramp."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.kernels import layout as L
from pipeline.scoring import load_scoring_config, score_frames
from pipeline.scoring.features import compute_features
from pipeline.state.frames import EVENT_COLUMNS, ClosedFrames, FrameStore

T0 = 1_770_000_000_000


def _frames(mismatch_every: int, n: int = 600) -> ClosedFrames:
    cols: dict[str, np.ndarray] = {name: np.zeros(n, dtype) for name, dtype in EVENT_COLUMNS.items()}
    cols["ts_ms"] = T0 + np.arange(n, dtype=np.int64) * 400
    cols["temperature"] = np.full(n, np.nan, np.float32)
    marked = (np.arange(n) % mismatch_every == 0) if mismatch_every else np.zeros(n, bool)
    cols["flags"] = np.where(marked, L.FLAG_CLIENT_MISMATCH, 0).astype(np.uint16)
    store = FrameStore(n_partitions=1, allowed_lateness_ms=0, max_accounts=2)
    store.ensure_slots(1)
    evicted, _ = store.ingest(cols)
    return ClosedFrames.concat([evicted, store.close_frames(force=True)])


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
