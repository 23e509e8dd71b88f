"""Evaluation: the paper's protocol on whole volumes (simulated LR, bicubic beside the model)."""

from fagan.evaluation.simulate import (
    SimulatedPair,
    VolumeScores,
    bicubic_volume,
    foreground_mask,
    score_volume,
    simulate_low_resolution,
)

__all__ = [
    "SimulatedPair",
    "VolumeScores",
    "bicubic_volume",
    "foreground_mask",
    "score_volume",
    "simulate_low_resolution",
]
