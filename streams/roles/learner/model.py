"""One model's learner: score each batch with the model as it was, then learn it.

With ``mode="batch"`` and a model with mini-batch methods (the linear specs), a batch is
scored, then learned in one :func:`~riverops.models.batch.learn_batch` call (progressive
validation at batch granularity: rows of one batch do not see each other's labels). Other
models (the trees), and ``mode="row"``, score and learn one row at a time, River's own
loop. The learner counts its samples per snapshot period and in total, keeps the
period's progressive metrics and the offset spans of everything it learned.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from typing import Any, Literal

from riverops.models.batch import learn_batch, predict_batch, predict_proba_batch, supports_many
from riverops.models.specs import drop_missing
from riverops.roles.learner.lineage import OffsetSpans
from riverops.roles.learner.progressive import ProgressiveMetrics
from riverops.schemas.errors import InvalidEventError
from riverops.schemas.events import Task

__all__ = ["LearnMode", "Failure", "ModelLearner"]

LearnMode = Literal["batch", "row"]
"""``batch``: mini-batches through ``learn_batch``; ``row``: predict then learn per row."""

Failure = tuple[int, InvalidEventError]
"""A row the model could not learn: its index in the batch, and why."""


class ModelLearner:
    """The live model of one model name, owned by the learner, and its counters."""

    def __init__(self, estimator: Any, *, spec: str, parent: int | None, task: Task,
                 samples: int, mode: LearnMode) -> None:
        self.mode: LearnMode = mode
        self.estimator = estimator
        self.spec = spec
        self.parent = parent
        self.task: Task = task
        self.samples = 0  # learned in the current snapshot period
        self.total_samples = samples  # learned since the model started (a resumed one's too)
        self.metrics = ProgressiveMetrics(task)
        self.spans = OffsetSpans()
        self.since: float | None = None  # caller time the current period started

    def learn(self, rows: list[Mapping[str, Any]], labels: list[Any]) -> list[Failure]:
        """Score then learn one batch; the rows the model cannot take, by index.

        A model with mini-batch methods scores the batch, then learns it in one call; if
        that fails (e.g. a string where the model wants numbers), the model is restored
        from a copy taken before the batch (~0.3 ms for a linear pipeline, 3% of the
        batch) and the rows go one at a time, so that only the bad ones are rejected.
        Other models (the trees) go one at a time anyway, as ``learn_batch`` would.
        """
        if self.mode == "row" or not supports_many(self.estimator):
            return self._learn_each(rows, labels)
        backup = pickle.dumps(self.estimator, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            predicted = self._predict(rows)
            learn_batch(self.estimator, rows, labels)
        except (TypeError, ValueError):
            self.estimator = pickle.loads(backup)  # our own bytes, made just above
            return self._learn_each(rows, labels)
        for y, p in zip(labels, predicted, strict=True):
            self.metrics.update(y, p)
        self.samples += len(rows)
        self.total_samples += len(rows)
        return []

    def next_period(self, now_seconds: float | None) -> None:
        """Start a new snapshot period (at ``now_seconds``, else at the next due check)."""
        self.samples = 0
        self.metrics = ProgressiveMetrics(self.task)
        self.since = now_seconds

    def _learn_each(self, rows: list[Mapping[str, Any]], labels: list[Any]) -> list[Failure]:
        # River's own progressive validation: each row scored, then learned; a row that
        # fails midway may leave part of a pipeline updated (a scaler before the regression)
        failed: list[Failure] = []
        for i, (row, y) in enumerate(zip(rows, labels, strict=True)):
            x = drop_missing(row)
            try:
                if self.task == "regression":
                    p = self.estimator.predict_one(x)
                else:
                    p = self.estimator.predict_proba_one(x)
                self.estimator.learn_one(x, y)
            except (TypeError, ValueError) as exc:
                failed.append((i, InvalidEventError(f"the model cannot learn the record: {exc}")))
                continue
            self.metrics.update(y, p)
            self.samples += 1
            self.total_samples += 1
        return failed

    def _predict(self, rows: list[Mapping[str, Any]]) -> list[Any]:
        if self.task == "regression":
            return predict_batch(self.estimator, rows)
        return list(predict_proba_batch(self.estimator, rows))
