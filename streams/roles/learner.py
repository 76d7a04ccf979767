"""The learner's pure core: feedback events in, incremental learning and model snapshots out.

:class:`LearnerCore` keeps one River model per model name, obtained on the first feedback
for that name from a ``start`` callable (a copy of the current champion loaded from the
registry, or a fresh model from a spec). Feedback is learned in arrival order, in mini-batches
with :func:`riverops.models.batch.learn_batch` when the model has mini-batch methods (the linear
specs): each batch is first scored with the model as it was before the batch (progressive
validation at batch granularity: rows of one batch do not see each other's labels).
Other models (the trees) score and learn one row at a time, River's own loop. A snapshot is
due every ``every_samples`` learned samples or ``every_seconds`` of caller time; it is a
deep copy of the model with its spec, parent version, progressive metrics of the period
and the training data offset ranges since the model started: a candidate version with
lineage. Records are deduplicated by (model, event_id) over the last ``dedupe_size`` ids
(Kafka re-delivers the uncommitted tail after a restart or a rebalance); records that
break the contract are returned as :class:`Rejected`, for the dead-letter topic.

Offset ranges are spans: per (topic, partition), from the smallest offset learned to the
largest plus one. The feedback topic is keyed by model, so a span may also hold other
models' records and skipped ones: replaying the span for this model with the same dedupe
reproduces the training data.

Examples
--------
>>> from riverops.models.specs import get_spec
>>> core = LearnerCore(lambda name: Start(get_spec("logreg").build(), "logreg"),
...                    every_samples=2)
>>> feedback = [{"event_id": f"e{i}", "model": "fraud", "features": {"x": float(i)},
...              "label": i % 2 == 0} for i in range(3)]
>>> result = core.update(feedback, sources=[("feedback", 0, 10 + i) for i in range(3)])
>>> result.learned, result.duplicates, core.due(0.0)
(3, 0, ['fraud'])
>>> snap = core.snapshot("fraud")
>>> snap.samples, snap.spec, snap.training_data
(3, 'logreg', [{'topic': 'feedback', 'partition': 0, 'start': 10, 'end': 13}])
>>> core.update([{**feedback[0], "label": "maybe"}]).rejected[0].error
InvalidEventError("not a binary class: 'maybe'")
"""

from __future__ import annotations

import collections
import copy
import math
import pickle
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from river import metrics

from riverops.models.batch import learn_batch, predict_batch, predict_proba_batch, supports_many
from riverops.models.labels import coerce_label
from riverops.models.specs import drop_missing, get_spec
from riverops.roles.joiner import Source
from riverops.schemas.errors import ConfigError, InvalidEventError
from riverops.schemas.events import Task

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
    "check_features",
]

LearnMode = Literal["batch", "row"]
"""``batch``: mini-batches through ``learn_batch``; ``row``: predict then learn per row."""
_Failure = tuple[int, InvalidEventError]
_SCALARS = frozenset({bool, int, str, type(None)})


class Start(NamedTuple):
    """The model a learner starts from: a River estimator (owned by the learner from now
    on), the spec that built it, its parent version in the registry, when it is not the
    spec's, the task, and how many samples it learned already (a resumed snapshot's)."""

    estimator: Any
    spec: str
    parent: int | None = None
    task: Task | None = None
    samples: int = 0


StartFn = Callable[[str], Start]
"""model name -> the model to start learning from; InvalidEventError for an unknown name."""


class Rejected(NamedTuple):
    """A record that breaks the contract, with where it came from and why: a dead letter."""

    record: Mapping[str, Any]
    source: Source | None
    error: InvalidEventError


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A candidate model version: a copy of the learner's model and its lineage."""

    model: str
    spec: str
    task: Task
    estimator: Any
    parent: int | None
    samples: int  # learned during the period this snapshot closes
    total_samples: int  # learned since the learner started
    metrics: dict[str, float]  # progressive metrics of the period, finite values only
    training_data: list[dict[str, Any]]  # {topic, partition, start, end}: since the start


@dataclass(frozen=True, slots=True)
class LearnResult:
    """What one :meth:`LearnerCore.update` did."""

    learned: int
    duplicates: int
    rejected: list[Rejected]


@dataclass(frozen=True, slots=True)
class LearnerStatus:
    """One learner's counters, for gauges and the status view."""

    model: str
    spec: str
    parent: int | None
    samples: int
    total_samples: int
    metrics: dict[str, float]


def check_features(features: Any) -> Mapping[str, Any]:
    """``features`` if it is a map of names to None, bool, finite number or str (NaN means
    missing); InvalidEventError otherwise: an infinity would poison the running statistics.

    >>> check_features({"a": 1.0, "b": None, "c": "x", "d": float("nan")})["a"]
    1.0
    >>> check_features({"a": float("-inf")})
    Traceback (most recent call last):
    ...
    riverops.schemas.errors.InvalidEventError: feature 'a' has an invalid value -inf
    """
    if not isinstance(features, Mapping):
        raise InvalidEventError("no features map")
    for name, value in features.items():  # exact types first: this runs once per event
        kind = type(value)
        if type(name) is str and (
            (kind is float and (value - value == 0.0 or value != value)) or kind in _SCALARS
        ):
            continue
        if not isinstance(name, str):
            raise InvalidEventError(f"feature name {name!r} is not a string")
        if value is None or isinstance(value, bool | str):
            continue
        if not isinstance(value, int | float) or math.isinf(value):
            raise InvalidEventError(f"feature {name!r} has an invalid value {value!r}")
    return features


class ProgressiveMetrics:
    """River metrics of a model's predictions made before it learned the label:
    accuracy and ROC AUC (binary), accuracy (multiclass), MAE (regression)."""

    def __init__(self, task: Task) -> None:
        self.task = task
        self.n = 0
        self._metrics: dict[str, Any] = (
            {"accuracy": metrics.Accuracy(), "roc_auc": metrics.ROCAUC()} if task == "binary"
            else {"accuracy": metrics.Accuracy()} if task == "multiclass"
            else {"mae": metrics.MAE()}
        )

    def update(self, y: Any, predicted: Any) -> None:
        """Fold one (label, prediction) in: class probabilities for a classifier (River's
        argmax is the predicted class), a number for a regressor. Like River's progressive
        validation, an empty answer (a model that saw no label yet) is not scored."""
        if predicted is None or predicted == {}:
            return
        self.n += 1
        if self.task == "regression":
            self._metrics["mae"].update(y, predicted)
            return
        self._metrics["accuracy"].update(y, max(predicted, key=predicted.get))
        if "roc_auc" in self._metrics:
            self._metrics["roc_auc"].update(y, predicted)

    def values(self) -> dict[str, float]:
        """Finite metric values (NaN and inf are left out); none before the first answer."""
        out: dict[str, float] = {}
        for name, metric in self._metrics.items() if self.n else ():
            value = float(metric.get())
            if math.isfinite(value):
                out[name] = value + 0.0  # no -0.0
        return out


class _Learner:
    def __init__(self, start: Start, mode: LearnMode) -> None:
        self.mode = mode
        self.estimator = start.estimator
        self.spec = start.spec
        self.parent = start.parent
        self.task: Task = start.task or get_spec(start.spec).task
        self.samples = 0
        self.total_samples = start.samples
        self.metrics = ProgressiveMetrics(self.task)
        self.spans: dict[tuple[str, int], list[int]] = {}  # (topic, partition) -> [start, end)
        self.since: float | None = None  # caller time the current period started

    def learn(self, rows: list[Mapping[str, Any]], labels: list[Any]) -> list[_Failure]:
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

    def _learn_each(self, rows: list[Mapping[str, Any]], labels: list[Any]) -> list[_Failure]:
        # River's own progressive validation: each row scored, then learned; a row that
        # fails midway may leave part of a pipeline updated (a scaler before the regression)
        failed: list[_Failure] = []
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

    def cover(self, source: Source) -> None:
        topic, partition, offset = source
        span = self.spans.get((topic, partition))
        if span is None:
            self.spans[topic, partition] = [offset, offset + 1]
        else:
            span[0], span[1] = min(span[0], offset), max(span[1], offset + 1)

    def training_data(self) -> list[dict[str, Any]]:
        return [
            {"topic": topic, "partition": partition, "start": start, "end": end}
            for (topic, partition), (start, end) in sorted(self.spans.items())
        ]


class LearnerCore:
    """Incremental learners, one per model name, fed FeedbackEvent dicts; no Kafka, no clock.

    ``start`` gives the model to learn from on a model name's first feedback; a snapshot
    is due after ``every_samples`` samples or ``every_seconds`` of caller time with at least
    one sample; ``batch_size`` rows go to each ``learn_batch`` call. ``mode="row"`` learns
    one row at a time instead (River's loop, ~27k rows/s for ``logreg``): one ``learn_many``
    call is one SGD step, so 1000-row batches keep a linear model's probabilities near 0.5
    for tens of thousands of samples (ROC AUC ~0.5 on Phishing, on SEA after 50k rows).
    """

    def __init__(
        self,
        start: StartFn,
        *,
        every_samples: int = 5000,
        every_seconds: float = 60.0,
        batch_size: int = 1000,
        mode: LearnMode = "row",
        dedupe_size: int = 200_000,
    ) -> None:
        if every_samples < 1 or every_seconds <= 0 or batch_size < 1 or dedupe_size < 1:
            raise ConfigError(
                "every_samples, every_seconds, batch_size and dedupe_size must be positive"
            )
        self._start = start
        self.every_samples = every_samples
        self.every_seconds = every_seconds
        self.batch_size = batch_size
        self.mode: LearnMode = mode
        self.dedupe_size = dedupe_size
        self.duplicates = 0
        self.rejected = 0
        self._learners: dict[str, _Learner] = {}
        self._seen: collections.OrderedDict[tuple[str, str], None] = collections.OrderedDict()

    @property
    def models(self) -> list[str]:
        """The model names learned so far, sorted."""
        return sorted(self._learners)

    def update(
        self,
        records: Iterable[Mapping[str, Any]],
        *,
        sources: Sequence[Source] | None = None,
    ) -> LearnResult:
        """Learn a batch of FeedbackEvent dicts, in order; ``sources`` holds each record's
        (topic, partition, offset), for lineage and dead letters."""
        records = list(records)
        if sources is not None and len(sources) != len(records):
            raise ValueError(f"{len(records)} records but {len(sources)} sources")
        batches: dict[str, list[tuple[Mapping[str, Any], Source | None, Any]]] = {}
        rejected: list[Rejected] = []
        duplicates = 0
        for i, record in enumerate(records):
            source = sources[i] if sources is not None else None
            try:
                key, y = self._admit(record)
            except InvalidEventError as exc:
                rejected.append(Rejected(record, source, exc))
                continue
            if key in self._seen:
                duplicates += 1
                continue
            self._seen[key] = None
            if len(self._seen) > self.dedupe_size:
                self._seen.popitem(last=False)  # forget the oldest id
            batches.setdefault(key[0], []).append((record, source, y))
        learned = 0
        for model, items in batches.items():
            learner = self._learners[model]
            for lo in range(0, len(items), self.batch_size):
                chunk = items[lo : lo + self.batch_size]
                failed = learner.learn([r["features"] for r, _, _ in chunk], [y for *_, y in chunk])
                for j, error in failed:
                    rejected.append(Rejected(chunk[j][0], chunk[j][1], error))
                bad = {j for j, _ in failed}
                for j, (_, source, _) in enumerate(chunk):
                    if source is not None and j not in bad:
                        learner.cover(source)
                learned += len(chunk) - len(failed)
        self.duplicates += duplicates
        self.rejected += len(rejected)
        return LearnResult(learned, duplicates, rejected)

    def _admit(self, record: Mapping[str, Any]) -> tuple[tuple[str, str], Any]:
        """The dedupe key and coerced label of a valid record; InvalidEventError
        (before any state changes, bar the learner's creation) otherwise."""
        if not isinstance(record, Mapping):
            raise InvalidEventError("feedback is not a record")
        model, event_id = record.get("model"), record.get("event_id")
        if not isinstance(model, str) or not model or not isinstance(event_id, str) or not event_id:
            raise InvalidEventError("feedback without a model name or event_id")
        check_features(record.get("features"))
        if record.get("label") is None:
            raise InvalidEventError(f"feedback {event_id} has no label")
        learner = self._learners.get(model)
        if learner is None:
            learner = self._learners[model] = _Learner(self._start(model), self.mode)
        return (model, event_id), coerce_label(learner.task, record["label"])

    def due(self, now_seconds: float) -> list[str]:
        """The models whose snapshot is due at caller time ``now_seconds``: ``every_samples``
        learned, or ``every_seconds`` since the period started (the snapshot before, else
        the first ``due`` call that found the model) with at least one sample learned."""
        out = []
        for model in self.models:
            learner = self._learners[model]
            if learner.since is None:
                learner.since = now_seconds
            if learner.samples >= self.every_samples or (
                learner.samples and now_seconds - learner.since >= self.every_seconds
            ):
                out.append(model)
        return out

    def snapshot(self, model: str, *, now_seconds: float | None = None) -> Snapshot:
        """A deep copy of ``model``'s learner and its lineage; starts the next period (at
        ``now_seconds``, else at the next :meth:`due` call). The learner goes on with the
        same model object and keeps its cumulative offset ranges."""
        learner = self._learners.get(model)
        if learner is None:
            raise KeyError(f"no learner for model {model!r}")
        snap = Snapshot(
            model=model,
            spec=learner.spec,
            task=learner.task,
            estimator=copy.deepcopy(learner.estimator),
            parent=learner.parent,
            samples=learner.samples,
            total_samples=learner.total_samples,
            metrics=learner.metrics.values(),
            training_data=learner.training_data(),
        )
        learner.samples = 0
        learner.metrics = ProgressiveMetrics(learner.task)
        learner.since = now_seconds
        return snap

    def status(self) -> list[LearnerStatus]:
        """Every learner's counters and the progressive metrics of its current period."""
        return [
            LearnerStatus(model, lr.spec, lr.parent, lr.samples, lr.total_samples,
                          lr.metrics.values())
            for model, lr in sorted(self._learners.items())
        ]
