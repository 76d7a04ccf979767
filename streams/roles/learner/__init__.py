"""The learner: incremental learning from feedback, snapshots published as candidate versions.

:mod:`~riverops.roles.learner.core` is the pure core (no Kafka, no clock), built from
:mod:`~riverops.roles.learner.feedback` (what may be learned from),
:mod:`~riverops.roles.learner.model` (one model's score-then-learn loop),
:mod:`~riverops.roles.learner.progressive` (its metrics) and
:mod:`~riverops.roles.learner.lineage` (the offsets it learned from);
:mod:`~riverops.roles.learner.role` runs it on the worker runtime.
"""

from riverops.models.labels import coerce_label
from riverops.roles.learner.core import (
    LearnerCore,
    LearnerStatus,
    LearnResult,
    Rejected,
    Snapshot,
    Start,
    StartFn,
)
from riverops.roles.learner.feedback import check_feedback
from riverops.roles.learner.model import LearnMode
from riverops.roles.learner.progressive import ProgressiveMetrics
from riverops.roles.learner.role import LearnerRole, LearnerStats, run_learner

__all__ = [
    "Start",
    "StartFn",
    "Snapshot",
    "Rejected",
    "LearnResult",
    "LearnerStatus",
    "LearnerCore",
    "LearnMode",
    "ProgressiveMetrics",
    "coerce_label",
    "check_feedback",
    "LearnerRole",
    "LearnerStats",
    "run_learner",
]
