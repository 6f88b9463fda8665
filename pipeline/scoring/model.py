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


GATE_FEATURES = ("calls_1h", "taken_1h")  # what the volume gate ramps on: calls, and tokens taken


def volume_gate(features: Mapping[str, np.ndarray], config: ScoringConfig) -> np.ndarray:
    """0..1 per row: the calls' ramp, or the tokens taken's (``taken_gate``) once the calls reach the
    calls' ``low``, whichever is higher."""
    calls = features[GATE_FEATURES[0]]
    gate = ramp(calls, config.volume_gate)
    if config.taken_gate is not None:
        taken = ramp(features[GATE_FEATURES[1]], config.taken_gate)
        gate = np.maximum(gate, np.where(calls >= config.volume_gate.low, taken, 0.0))
    return gate


def signal_points(features: Mapping[str, np.ndarray], config: ScoringConfig, names: Sequence[str]) -> np.ndarray:
    """Points of the signals ``names`` per row (``[rows, len(names)]``): weight × volume gate × each ramp.
    ``features`` must hold ``GATE_FEATURES`` and every feature those signals ramp on."""
    gate = volume_gate(features, config)
    points = np.zeros((len(gate), len(names)), np.float64)
    for j, name in enumerate(names):
        signal = config.signals[name]
        strength = gate.copy()
        for feature, r in signal.ramps.items():
            strength *= ramp(features[feature], r)
        points[:, j] = signal.weight * strength
    return points


def score_frames(frames: ClosedFrames, config: ScoringConfig) -> Scores:
    needed = sorted({f for s in config.signals.values() for f in s.ramps} | set(GATE_FEATURES))
    features = compute_features(frames, needed)
    names = list(config.signals)
    contributions = signal_points(features, config, names)
    score = np.minimum(contributions.sum(axis=1), 100.0).astype(np.float32)
    order = np.argsort(-contributions, axis=1, kind="stable")[:, : config.top_signals]
    top = [[names[j] for j in order[i] if contributions[i, j] >= config.min_contribution]
           for i in range(len(frames))]
    return Scores(score, names, contributions.astype(np.float32), top, features)
