"""The ``online`` variant's pure core: one model object predicts on features and learns on
labels, River's predict-then-learn loop over Kafka.

:class:`OnlineCore` takes FeatureEvent and LabelEvent dicts in *time* order (see
:mod:`riverops.roles.online.timeorder`). For features it calls ``predict_proba_one`` (``predict_one``
for a regressor) on the one model, remembers the features and the answer by event_id and
returns a PredictionEvent dict (variant ``online``). For a label of a remembered event it
scores the remembered answer with River metrics, then calls ``learn_one`` and forgets the
features. The one-by-one path, not :mod:`riverops.models.batch`, is deliberate: mini-batches
would change the model (one SGD step per batch) and each prediction must see every label
released before it. Fed features and labels in ``simulate_qa``'s order, the metrics equal
``river.evaluate.progressive_val_score`` with the same model and delay (tested to 1e-9).

Duplicates (features of an event already seen, a label already learned) are ignored and
counted; features that :func:`~riverops.schemas.validation.validate_features` refuses (the
scorer's rule: a NaN, an infinity, a huge string) are neither predicted on nor learned
from, and a label for an event whose features are unknown (never seen, refused, or evicted
after ``max_pending`` newer events) is rejected: both with a reason, for the dead-letter topic. The
predicted class is River's ``predict_one`` answer: the argmax of the probabilities, the
first class on a tie.

Examples
--------
>>> from datetime import UTC, datetime
>>> from riverops.models.specs import get_spec
>>> core = OnlineCore(get_spec("logreg").build(), version=3)
>>> t = datetime(2024, 1, 1, tzinfo=UTC)
>>> features = {"event_id": "e1", "model": "fraud", "entity_id": "c1", "event_time": t,
...             "features": {"amount": 12.5}}
>>> label = {"event_id": "e1", "model": "fraud", "label": True, "label_time": t}
>>> result = core.process([OnlineInput("features", features), OnlineInput("label", label),
...                        OnlineInput("label", label)], predicted_at=t)
>>> [(p["variant"], p["version"], p["prediction"], p["scores"]) for p in result.predictions]
[('online', 3, False, {'False': 0.5, 'True': 0.5})]
>>> result.learned, result.duplicates, core.metrics()["accuracy"], core.stats().pending
(1, 1, 0.0, 0)
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from riverops.models.labels import coerce_label
from riverops.models.specs import drop_missing
from riverops.roles.joiner.core import Source
from riverops.roles.learner.core import Rejected
from riverops.roles.learner.progressive import ProgressiveMetrics
from riverops.roles.online.timeorder import Kind
from riverops.schemas.errors import ConfigError, InvalidEventError
from riverops.schemas.events import Task
from riverops.schemas.validation import validate_features

__all__ = ["OnlineInput", "OnlineResult", "OnlineCoreStats", "OnlineCore"]


class OnlineInput(NamedTuple):
    """One released record: its kind (from its topic), the decoded record, its source."""

    kind: Kind
    record: Mapping[str, Any]
    source: Source | None = None


@dataclass(frozen=True, slots=True)
class OnlineResult:
    """What one :meth:`OnlineCore.process` call did: PredictionEvent dicts to produce,
    records to dead-letter, labels learned and duplicates ignored."""

    predictions: list[dict[str, Any]]
    rejected: list[Rejected]
    learned: int
    duplicates: int


@dataclass(frozen=True, slots=True)
class OnlineCoreStats:
    """Cumulative counters and the pending gauge, for metrics and the status view."""

    pending: int
    predicted: int
    learned: int
    duplicate_features: int
    duplicate_labels: int
    invalid: int
    evicted: int


class _Pending(NamedTuple):
    model: str
    x: dict[str, Any]
    answer: Any  # class probabilities, or a regressor's number (None: no answer yet)


class OnlineCore:
    """Predict-then-learn on one River model; no Kafka, no clock.

    ``estimator`` is owned by the core from now on; ``version`` goes on every prediction
    (assign the attribute to change it); ``task`` picks the label coercion and the metrics
    (accuracy and ROC AUC for binary, accuracy for multiclass, MAE for regression).
    ``max_pending`` bounds the events awaiting a label (the oldest is evicted), and
    ``dedupe_size`` the learned event ids remembered to ignore re-delivered records.
    """

    def __init__(
        self,
        estimator: Any,
        *,
        version: int,
        task: Task = "binary",
        max_pending: int = 1_000_000,
        dedupe_size: int = 200_000,
    ) -> None:
        if max_pending < 1 or dedupe_size < 1:
            raise ConfigError("max_pending and dedupe_size must be positive")
        self.estimator = estimator
        self.version = version
        self.task: Task = task
        self.max_pending = max_pending
        self.dedupe_size = dedupe_size
        self._metrics = ProgressiveMetrics(task)
        self._pending: dict[str, _Pending] = {}  # in arrival order: eviction pops the oldest
        self._done: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._predicted = self._learned = self._invalid = self._evicted = 0
        self._dup_features = self._dup_labels = 0

    def process(
        self,
        inputs: Iterable[OnlineInput],
        *,
        predicted_at: datetime | int,
        latency: float = 0.0,
    ) -> OnlineResult:
        """Predict on each features record and learn from each label, in the given order
        (the time order); ``predicted_at`` and ``latency`` go on every prediction."""
        predictions: list[dict[str, Any]] = []
        rejected: list[Rejected] = []
        learned = duplicates = 0
        for kind, record, source in inputs:
            try:
                if kind == "features":
                    prediction = self.predict(record, predicted_at=predicted_at, latency=latency)
                    if prediction is None:
                        duplicates += 1
                    else:
                        predictions.append(prediction)
                elif self.learn(record):
                    learned += 1
                else:
                    duplicates += 1
            except InvalidEventError as exc:
                rejected.append(Rejected(record, source, exc))
        return OnlineResult(predictions, rejected, learned, duplicates)

    def predict(
        self, record: Mapping[str, Any], *, predicted_at: datetime | int, latency: float = 0.0
    ) -> dict[str, Any] | None:
        """The PredictionEvent dict for a FeatureEvent dict, remembering its features for
        the label; ``None`` for a duplicate; InvalidEventError for a bad record."""
        try:
            event_id, model = _ids(record)
            features = record.get("features")
            if not isinstance(features, Mapping):
                raise InvalidEventError("no features map")
            validate_features(record)  # the scorer's rule: what it refuses is not learned from
        except InvalidEventError:
            self._invalid += 1
            raise
        if event_id in self._pending or event_id in self._done:
            self._dup_features += 1
            return None
        x = drop_missing(features)
        try:
            if self.task == "regression":
                answer = self.estimator.predict_one(x)
                scores: dict[str, float] = {}
                predicted = None if answer is None else float(answer)
            else:
                answer = self.estimator.predict_proba_one(x)
                scores = {str(k): float(v) for k, v in answer.items()}
                predicted = max(answer, key=answer.get) if answer else None
        except (TypeError, ValueError) as exc:  # e.g. a string where the model wants numbers
            self._invalid += 1
            raise InvalidEventError(f"the model cannot score event {event_id}: {exc}") from exc
        self._pending[event_id] = _Pending(model, x, answer)
        if len(self._pending) > self.max_pending:
            del self._pending[next(iter(self._pending))]
            self._evicted += 1
        self._predicted += 1
        return {
            "event_id": event_id,
            "model": model,
            "version": self.version,
            "variant": "online",
            "prediction": predicted,
            "scores": scores,
            "latency": latency,
            "event_time": record.get("event_time"),
            "predicted_at": predicted_at,
        }

    def learn(self, record: Mapping[str, Any]) -> bool:
        """Score the remembered answer and learn from a LabelEvent dict; ``False`` for a
        label already learned; InvalidEventError for a bad label or an unknown event."""
        try:
            event_id, model = _ids(record)
            if event_id in self._done:
                self._dup_labels += 1
                return False
            pending = self._pending.get(event_id)
            if pending is None:
                raise InvalidEventError(
                    f"label for event {event_id} whose features are unknown "
                    "(not seen yet, or evicted)"
                )
            if pending.model != model:
                raise InvalidEventError(
                    f"label of event {event_id} for model {model!r}, "
                    f"its features for {pending.model!r}"
                )
            y = coerce_label(self.task, record.get("label"))
        except InvalidEventError:
            self._invalid += 1
            raise
        del self._pending[event_id]
        try:
            self.estimator.learn_one(pending.x, y)
        except (TypeError, ValueError) as exc:  # the model may be partly updated: say so
            self._invalid += 1
            raise InvalidEventError(
                f"the model failed to learn event {event_id} (it may be partly updated): {exc}"
            ) from exc
        self._metrics.update(y, pending.answer)  # after learning: a failed label scores nothing
        self._done[event_id] = None
        if len(self._done) > self.dedupe_size:
            self._done.popitem(last=False)
        self._learned += 1
        return True

    def metrics(self) -> dict[str, float]:
        """Progressive metric values since the start (finite ones only)."""
        return self._metrics.values()

    def stats(self) -> OnlineCoreStats:
        """Cumulative counters and the number of events awaiting a label."""
        return OnlineCoreStats(
            pending=len(self._pending),
            predicted=self._predicted,
            learned=self._learned,
            duplicate_features=self._dup_features,
            duplicate_labels=self._dup_labels,
            invalid=self._invalid,
            evicted=self._evicted,
        )


def _ids(record: Mapping[str, Any]) -> tuple[str, str]:
    if not isinstance(record, Mapping):
        raise InvalidEventError("not a record")
    event_id, model = record.get("event_id"), record.get("model")
    if not isinstance(event_id, str) or not event_id or not isinstance(model, str) or not model:
        raise InvalidEventError("record without an event_id or a model name")
    return event_id, model
