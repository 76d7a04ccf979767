"""The retrainer: retrain requests from triggers, a fresh candidate from recent feedback,
promotion by policy, rollback of a new champion that fails its probation.

Pure parts, tested directly: :mod:`.frame` (the training frame), :mod:`.scoring` (holdout
metrics), :mod:`.seeding` (byte-for-byte artifacts), :mod:`.training` (the candidate and
its comparison with the champion), :mod:`.policy` (promote, challenger, reject, roll back),
:mod:`.triggers` (when to ask, when a request may run, probation), :mod:`.recovery` (the
fast retrain after a drift alarm, and the judgement of every request). The worker-runtime role
is :mod:`.role` (``riverops worker retrainer``).
"""

from __future__ import annotations

from riverops.roles.retrainer.frame import FEATURE_PREFIX, feature_rows, feedback_frame
from riverops.roles.retrainer.policy import Decision, Probation, PromotionPolicy, apply
from riverops.roles.retrainer.recovery import Judged, gain_bound, judge, recovery_candidate
from riverops.roles.retrainer.role import (
    RetrainerRole,
    RetrainerStats,
    new_request,
    request_retrain,
    run_retrainer,
)
from riverops.roles.retrainer.scoring import binary_metrics, regression_metrics
from riverops.roles.retrainer.training import RetrainResult, best_candidate, retrain
from riverops.roles.retrainer.triggers import RetrainerCore, Rollback, Trigger

__all__ = [
    "FEATURE_PREFIX", "feature_rows", "feedback_frame", "binary_metrics", "regression_metrics",
    "RetrainResult", "retrain", "best_candidate", "Decision", "Probation", "PromotionPolicy",
    "apply", "RetrainerCore", "Trigger", "Rollback", "RetrainerRole", "RetrainerStats",
    "run_retrainer", "request_retrain", "new_request", "Judged", "judge", "gain_bound",
    "recovery_candidate",
]
