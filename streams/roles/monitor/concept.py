"""Concept drift: a ``river.drift`` detector on one signal of a model's outcomes.

Each labelled outcome feeds one value of each *signal* the model's task has
(:mod:`~riverops.roles.monitor.signals` says which and feeds them: the 0/1
misclassification or the absolute error, the error on one class, the log-loss).
Detectors see change in both directions, but only a rise is worth acting on, so every
alarm is checked twice: it is *rising* when the mean after the change point exceeds the
mean before it, and *worse* (acted on) when, in addition, the level after is at least
``min_relative_rise`` above the level before, relative to that level (so a
minority-class error that goes from 1% to 3% counts as much as one from 10% to 30%), and
the rise is ``rise_z`` standard errors or more (a two-sample z statistic, pooled
variance: a handful of errors after a spotless stretch is not a rise).

Examples
--------
>>> import random
>>> rng = random.Random(12345)
>>> stream = rng.choices([0, 1], k=1000) + rng.choices(range(4, 8), k=1000)
>>> detector = ConceptDriftDetector("ADWIN")
>>> [(i, alarm.rising) for i, x in enumerate(stream) if (alarm := detector.update(x))]
[(1023, True)]
"""

from __future__ import annotations

import collections
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from river import drift

from riverops.schemas.errors import ConfigError, InvalidEventError

__all__ = ["DetectorName", "DETECTOR_NAMES", "Signal", "SIGNALS", "ConceptAlarm", "ConceptDriftDetector"]

DetectorName = Literal["ADWIN", "PageHinkley", "KSWIN", "DDM"]
DETECTOR_NAMES: tuple[DetectorName, ...] = get_args(DetectorName)
Signal = Literal["error", "positive_error", "negative_error", "log_loss"]
"""What a concept-drift detector watches: ``error`` (0/1 misclassification, or the absolute
error of a regression), ``positive_error`` / ``negative_error`` (the 0/1 error on the
outcomes whose label is the positive / negative class: 1 - recall, the false positive
rate), ``log_loss`` (minus the log of the probability given to the true class)."""
SIGNALS: tuple[Signal, ...] = get_args(Signal)


@dataclass(frozen=True, slots=True)
class ConceptAlarm:
    """A detector alarm on one signal: its levels either side of the change, whether it
    rose, and whether the rise passes the rule for acting on it (``worse``)."""

    detector: DetectorName
    signal: Signal
    rising: bool
    worse: bool
    error_before: float
    error_after: float
    z: float
    samples: int


def _make_detector(name: DetectorName, params: Mapping[str, Any]) -> Any:
    if name == "ADWIN":
        return drift.ADWIN(**params)
    if name == "PageHinkley":
        if params.get("mode", "up") != "up":
            raise ConfigError("PageHinkley runs with mode='up': only error rises are alarms")
        return drift.PageHinkley(**{**params, "mode": "up"})
    if name == "KSWIN":
        return drift.KSWIN(**params)
    if name == "DDM":
        return drift.binary.DDM(**params)
    raise ConfigError(f"unknown drift detector {name!r}; choose one of {DETECTOR_NAMES}")


def _rise_z(before: Sequence[float], after: Sequence[float]) -> float:
    """The two-sample z statistic of mean(after) - mean(before), with the pooled variance
    (of both parts together, as if there were no change); 0 when both are one constant."""
    mean_b, mean_a = math.fsum(before) / len(before), math.fsum(after) / len(after)
    values = [*before, *after]
    mean = math.fsum(values) / len(values)
    variance = math.fsum((x - mean) ** 2 for x in values) / max(len(values) - 1, 1)
    se = math.sqrt(variance * (1.0 / len(before) + 1.0 / len(after)))
    if se == 0.0:
        return 0.0 if mean_a == mean_b else math.copysign(math.inf, mean_a - mean_b)
    return (mean_a - mean_b) / se


class ConceptDriftDetector:
    """A river.drift detector on one signal that tells rises from falls, and rises worth
    acting on from the rest.

    Rule: at an alarm, the last ``r`` values are the "after" part and the values before
    them (at most ``history``), the "before" part; the alarm is ``rising`` when
    mean(after) > mean(before), and ``worse`` when it is rising, mean(after) >= (1 +
    ``min_relative_rise``) * mean(before) and the z statistic of the difference is >=
    ``rise_z`` (both 0 by default: every rise is worse). ``r`` is where the detector puts
    the change: ADWIN's window kept after its cut, KSWIN's ``stat_size`` tested values, else
    ``recent``. PageHinkley runs in mode "up" and DDM's test is one-sided, so their alarms
    are rises by construction; the check still applies, uniformly.

    What an alarm leaves behind:

    - *worse*: the detector starts afresh (as River does) and only the "after" part is
      kept, so the new level is the baseline for the next comparison;
    - *a fall*: likewise the "after" part becomes the baseline (a fall re-bases, it never
      fires), but ADWIN goes on from the window it kept after its cut (River empties it):
      emptied at a fall just before a rise, it would take the risen level for its baseline;
    - *a rise too small*: the baseline stays the level before it (the "before" part is
      kept) and ADWIN goes on from its window, so a rise that goes on is measured, when
      ADWIN fires again, from where it started.

    ``scale`` divides what the River detector is fed (not the levels an alarm reports):
    ADWIN's bound holds for values in [0, 1], so an unbounded but capped signal (the
    log-loss) is fed over its cap. DDM takes 0/1 errors only; use ADWIN, PageHinkley or
    KSWIN for the others.
    """

    def __init__(
        self,
        detector: DetectorName = "ADWIN",
        *,
        signal: Signal = "error",
        params: Mapping[str, Any] | None = None,
        recent: int = 50,
        history: int = 10_000,
        scale: float = 1.0,
        min_relative_rise: float = 0.0,
        rise_z: float = 0.0,
    ) -> None:
        if recent < 1 or history < 2:
            raise ConfigError("recent must be >= 1 and history >= 2")
        if scale <= 0 or min_relative_rise < 0 or rise_z < 0:
            raise ConfigError("scale must be positive, min_relative_rise and rise_z >= 0")
        if signal not in SIGNALS:
            raise ConfigError(f"unknown signal {signal!r}; choose one of {SIGNALS}")
        self.detector = detector
        self.signal: Signal = signal
        self.params = dict(params or {})
        self.recent = recent
        self.history = history
        self.scale = scale
        self.min_relative_rise = min_relative_rise
        self.rise_z = rise_z
        self._detector = _make_detector(detector, self.params)
        self._errors: collections.deque[float] = collections.deque(maxlen=history)
        self.samples = 0
        self.rises = 0
        self.falls = 0
        self.worse = 0

    def _after_length(self) -> int:
        if self.detector == "ADWIN":
            return int(self._detector.width)
        if self.detector == "KSWIN":
            return int(self._detector.stat_size)
        return self.recent

    def update(self, error: float) -> ConceptAlarm | None:
        """Feed one value of the signal; return the alarm if the detector fired on it."""
        if self.detector == "DDM" and error not in (0, 1):
            raise InvalidEventError(f"DDM takes 0/1 errors, got {error!r}")
        self.samples += 1
        self._errors.append(float(error))
        self._detector.update(error / self.scale)
        if not self._detector.drift_detected:
            return None
        errors = list(self._errors)
        after = max(1, min(self._after_length(), len(errors) - 1))
        before = errors[: len(errors) - after] or errors
        mean_before = math.fsum(before) / len(before)
        mean_after = math.fsum(errors[-after:]) / after
        rising = mean_after > mean_before
        z = _rise_z(before, errors[-after:])
        worse = (rising and mean_after >= (1.0 + self.min_relative_rise) * mean_before
                 and z >= self.rise_z)
        if rising:
            self.rises += 1
        else:
            self.falls += 1
        self.worse += worse
        if rising and not worse:  # the level before the rise stays the baseline
            self._restart(errors[-after:])
        else:
            self._errors = collections.deque(errors[-after:], maxlen=self.history)
            self._restart(() if worse else errors[-after:])
        return ConceptAlarm(self.detector, self.signal, rising, worse, mean_before, mean_after,
                            z, self.samples)

    def _restart(self, baseline: Sequence[float]) -> None:
        """A fresh River detector; ADWIN's has seen ``baseline`` (should it fire within
        it, it starts afresh on the rest)."""
        self._detector = _make_detector(self.detector, self.params)
        if self.detector != "ADWIN":
            return
        for value in baseline:
            self._detector.update(value / self.scale)
            if self._detector.drift_detected:
                self._detector = _make_detector(self.detector, self.params)
