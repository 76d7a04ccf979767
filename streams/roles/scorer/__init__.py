"""The scorer: feature events in, predictions out, following the registry live.

:mod:`~riverops.roles.scorer.core` is the pure core (serving plans, routing, batched
predictions, explanations, estimates); :mod:`~riverops.roles.scorer.role` runs it on the
worker runtime.
"""

from riverops.roles.scorer.core import ScorerCore, ScoreResult, ServingModel, bucket_of
from riverops.roles.scorer.role import ScorerRole, ScorerStats, apply_registry, run_scorer

__all__ = [
    "ServingModel", "ScorerCore", "ScoreResult", "ScorerStats", "bucket_of",
    "apply_registry", "ScorerRole", "run_scorer",
]
