"""Apply a ScoringConfig to closed frames: score 0–100, contributions, top signals."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.scoring.config import Ramp, ScoringConfig
from pipeline.scoring.features import compute_features
from pipeline.state.frames import ClosedFrames


def ramp(x: np.ndarray, r: Ramp) -> np.ndarray:
    return np.clip((x - r.low) / (r.high - r.low), 0.0, 1.0)


@dataclass(frozen=True)
class Scores:
    score: np.ndarray  # float32 [rows], 0..100
    names: list[str]  # signal names, the columns of contributions
    contributions: np.ndarray  # float32 [rows, signals], points per signal
    top_signals: list[list[str]]
    features: dict[str, np.ndarray]


def score_frames(frames: ClosedFrames, config: ScoringConfig) -> Scores:
    needed = sorted({f for s in config.signals.values() for f in s.ramps} | {"calls_1h"})
    features = compute_features(frames, needed)
    gate = ramp(features["calls_1h"], config.volume_gate)
    names = list(config.signals)
    contributions = np.zeros((len(frames), len(names)), np.float64)
    for j, name in enumerate(names):
        signal = config.signals[name]
        strength = gate.copy()
        for feature, r in signal.ramps.items():
            strength *= ramp(features[feature], r)
        contributions[:, j] = signal.weight * strength
    score = np.minimum(contributions.sum(axis=1), 100.0).astype(np.float32)
    order = np.argsort(-contributions, axis=1, kind="stable")[:, : config.top_signals]
    top = [[names[j] for j in order[i] if contributions[i, j] >= config.min_contribution]
           for i in range(len(frames))]
    return Scores(score, names, contributions.astype(np.float32), top, features)
