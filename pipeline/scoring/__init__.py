"""Explainable extraction scores: features from rolled windows, signals, weights from a versioned file."""

from pipeline.scoring.config import ScoringConfig, load_scoring_config
from pipeline.scoring.model import Scores, score_frames

__all__ = ["Scores", "ScoringConfig", "load_scoring_config", "score_frames"]
