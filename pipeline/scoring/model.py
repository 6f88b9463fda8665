"""Apply a ScoringConfig to closed frames: score 0–100, contributions, top signals."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.scoring.config import Ramp, ScoringConfig
from pipeline.scoring.features import compute_features
from pipeline.state.closed_frames import ClosedFrames


def ramp(x: np.ndarray, r: Ramp) -> np.ndarray:
    return np.clip((x - r.low) / (r.high - r.low), 0.0, 1.0)


@dataclass(frozen=True)
class Scores:
    score: np.ndarray  # float32 [rows], 0..100
    names: list[str]  # signal names, the columns of contributions
    contributions: np.ndarray  # float32 [rows, signals], points per signal
    top_signals: list[list[str]]
    features: dict[str, np.ndarray]


GATE_FEATURE = "calls_1h"  # what the volume gate ramps on


def signal_points(features: Mapping[str, np.ndarray], config: ScoringConfig, names: Sequence[str]) -> np.ndarray:
    """Points of the signals ``names`` per row (``[rows, len(names)]``): weight × volume gate × each ramp.
    ``features`` must hold ``GATE_FEATURE`` and every feature those signals ramp on."""
    gate = ramp(features[GATE_FEATURE], config.volume_gate)
    points = np.zeros((len(gate), len(names)), np.float64)
    for j, name in enumerate(names):
        signal = config.signals[name]
        strength = gate.copy()
        for feature, r in signal.ramps.items():
            strength *= ramp(features[feature], r)
        points[:, j] = signal.weight * strength
    return points


def score_frames(frames: ClosedFrames, config: ScoringConfig) -> Scores:
    needed = sorted({f for s in config.signals.values() for f in s.ramps} | {GATE_FEATURE})
    features = compute_features(frames, needed)
    names = list(config.signals)
    contributions = signal_points(features, config, names)
    score = np.minimum(contributions.sum(axis=1), 100.0).astype(np.float32)
    order = np.argsort(-contributions, axis=1, kind="stable")[:, : config.top_signals]
    top = [[names[j] for j in order[i] if contributions[i, j] >= config.min_contribution]
           for i in range(len(frames))]
    return Scores(score, names, contributions.astype(np.float32), top, features)
