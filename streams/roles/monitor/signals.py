"""The signals concept drift watches, per model task, and one detector on each.

On an imbalanced stream the 0/1 error barely moves when the minority class changes: with
2% fraud, missing every new fraud adds at most two points to it. So each outcome feeds
the signals of its task (:data:`~riverops.roles.monitor.concept.Signal`):

- ``error``: the 0/1 misclassification, or a regression's absolute error;
- ``positive_error`` / ``negative_error`` (binary): the 0/1 error of the outcomes whose
  label is True / False, i.e. 1 - recall and the false positive rate, each on its own
  class's outcomes only, so the minority class's error is measured at its own level;
- ``log_loss`` (binary, multiclass): -log of the probability given to the true class,
  floored at ``PROBABILITY_FLOOR`` so that the signal is capped at ``LOG_LOSS_CAP``
  (6.9); it is fed to the detector over its cap, in [0, 1], where ADWIN's bound holds.
  A confident miss costs up to the cap, so a new minority pattern the model scores as
  safe moves it at once. Outcomes without the score are skipped.

Defaults (:data:`DEFAULT_SIGNALS`): binary ``positive_error`` and ``log_loss``; multiclass
``error`` and ``log_loss``; regression ``error`` (the only one it has).

Examples
--------
>>> from riverops.roles.monitor.windows import outcome_of
>>> made = {"prediction": False, "scores": {"True": 0.01, "False": 0.99}}
>>> values = signal_values("binary", outcome_of("binary", True, made), SIGNALS)
>>> {name: round(value, 3) for name, value in values.items()}
{'error': 1.0, 'positive_error': 1.0, 'log_loss': 4.605}
>>> watch = ConceptWatch("binary")
>>> watch.signals
('positive_error', 'log_loss')
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from riverops.roles.monitor.concept import (
    SIGNALS,
    ConceptAlarm,
    ConceptDriftDetector,
    DetectorName,
    Signal,
)
from riverops.roles.monitor.windows import Outcome
from riverops.schemas.errors import ConfigError
from riverops.schemas.events import Task

__all__ = [
    "DEFAULT_SIGNALS", "TASK_SIGNALS", "PROBABILITY_FLOOR", "LOG_LOSS_CAP",
    "check_signals", "signal_values", "ConceptWatch",
]

DEFAULT_SIGNALS: Mapping[Task, tuple[Signal, ...]] = {
    "binary": ("positive_error", "log_loss"),
    "multiclass": ("error", "log_loss"),
    "regression": ("error",),
}
TASK_SIGNALS: Mapping[Task, tuple[Signal, ...]] = {
    "binary": SIGNALS,
    "multiclass": ("error", "log_loss"),
    "regression": ("error",),
}
"""The signals each task has."""

PROBABILITY_FLOOR = 1e-3
LOG_LOSS_CAP = -math.log(PROBABILITY_FLOOR)

_ZERO_ONE: frozenset[Signal] = frozenset({"error", "positive_error", "negative_error"})


def check_signals(task: Task, signals: Sequence[str], detector: DetectorName = "ADWIN") -> tuple[Signal, ...]:
    """``signals`` as a tuple if ``task`` has each of them (at least one, none twice) and
    ``detector`` can take them (DDM: 0/1 errors only); ConfigError otherwise."""
    allowed = TASK_SIGNALS[task]
    unknown = [s for s in signals if s not in allowed]
    if unknown or not signals or len(set(signals)) != len(signals):
        raise ConfigError(f"{task} signals must be one or more of {allowed}, each once; got {list(signals)}")
    checked = tuple(s for s in allowed if s in signals)  # the canonical order
    if detector == "DDM" and (task == "regression" or not set(checked) <= _ZERO_ONE):
        raise ConfigError(f"DDM takes 0/1 errors: {task} signals {list(checked)} are not all 0/1")
    return checked


def _true_class_probability(outcome: Outcome) -> float | None:
    proba: Any = outcome.proba
    if proba is None:
        return None
    if isinstance(proba, Mapping):  # multiclass: class -> probability
        return float(proba.get(outcome.y_true, 0.0))
    return float(proba) if outcome.y_true else 1.0 - float(proba)


def signal_values(task: Task, outcome: Outcome, signals: Sequence[Signal]) -> dict[Signal, float]:
    """The value of each of ``signals`` that ``outcome`` has (a class error only for its
    label's class, the log-loss only with a score)."""
    values: dict[Signal, float] = {}
    for signal in signals:
        if signal == "error":
            values[signal] = outcome.error
        elif signal == "positive_error":
            if task == "binary" and outcome.y_true:
                values[signal] = outcome.error
        elif signal == "negative_error":
            if task == "binary" and not outcome.y_true:
                values[signal] = outcome.error
        elif (p := _true_class_probability(outcome)) is not None:
            values[signal] = -math.log(min(max(p, PROBABILITY_FLOOR), 1.0))
    return values


class ConceptWatch:
    """One :class:`~riverops.roles.monitor.concept.ConceptDriftDetector` per signal of a
    task, fed each outcome; :meth:`update` returns the alarms it raised (at most one per
    signal), ``worse`` or not."""

    def __init__(
        self,
        task: Task,
        signals: Sequence[str] | None = None,
        *,
        detector: DetectorName = "ADWIN",
        params: Mapping[str, Any] | None = None,
        min_relative_rise: float = 0.0,
        rise_z: float = 0.0,
    ) -> None:
        self.task = task
        self.signals = check_signals(task, DEFAULT_SIGNALS[task] if signals is None else signals,
                                     detector)
        self.detector = detector
        self.detectors = {
            signal: ConceptDriftDetector(
                detector, signal=signal, params=params, min_relative_rise=min_relative_rise,
                rise_z=rise_z, scale=LOG_LOSS_CAP if signal == "log_loss" else 1.0,
            )
            for signal in self.signals
        }

    def update(self, outcome: Outcome) -> list[ConceptAlarm]:
        """Feed one outcome to the detectors of the signals it has."""
        alarms = []
        for signal, value in signal_values(self.task, outcome, self.signals).items():
            alarm = self.detectors[signal].update(value)
            if alarm is not None:
                alarms.append(alarm)
        return alarms

    @property
    def alarms(self) -> int:
        """Alarms raised on every signal, acted on or not."""
        return sum(d.rises + d.falls for d in self.detectors.values())

    @property
    def worse(self) -> int:
        """Alarms that passed the rule for acting on them."""
        return sum(d.worse for d in self.detectors.values())
