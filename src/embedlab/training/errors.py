"""The error of the training path."""

from __future__ import annotations


class TrainingError(ValueError):
    """Training cannot go on: a missing or unusable folder, an incompatible checkpoint, a loss that diverged.

    Bad option values never get here: `TrainSettings` rejects them with a ParameterError when they are given.
    """
