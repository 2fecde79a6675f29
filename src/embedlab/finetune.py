"""Kept for one release: the classifier moved to `embedlab.classifier`; import from there."""

from __future__ import annotations

from embedlab.classifier import *  # noqa: F403 - the old import path re-exports the new module
from embedlab.classifier import Classifier, ClassifierResult, FinetuneError, stratified_split, train_classifier

__all__ = ["Classifier", "ClassifierResult", "FinetuneError", "stratified_split", "train_classifier"]
