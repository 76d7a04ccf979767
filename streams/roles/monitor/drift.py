"""Drift detection: concept drift on a model's signal streams, data drift on its features.

Concept drift wraps a ``river.drift`` detector fed one value of one *signal* per labelled
outcome (:mod:`~riverops.roles.monitor.signals` says which signals there are and feeds
them: the 0/1 misclassification or the absolute error, the error on one class, the
log-loss). Detectors see change in both directions, but only a rise is worth acting on,
so every alarm is checked twice: it is *rising* when the mean after the change point
exceeds the mean before it, and *worse* (acted on) when, in addition, the level after is
at least ``min_relative_rise`` above the level before, relative to that level (so a
minority-class error that goes from 1% to 3% counts as much as one from 10% to 30%), and
the rise is ``rise_z`` standard errors or more (a two-sample z statistic, pooled
variance: a handful of errors after a spotless stretch is not a rise).

Data drift compares each feature's recent values with a reference window, by the
population stability index (PSI, every feature) and the two-sample Kolmogorov-Smirnov
statistic (KS, numeric features).

Examples
--------
>>> import random
>>> rng = random.Random(12345)
>>> stream = rng.choices([0, 1], k=1000) + rng.choices(range(4, 8), k=1000)
>>> detector = ConceptDriftDetector("ADWIN")
>>> [(i, alarm.rising) for i, x in enumerate(stream) if (alarm := detector.update(x))]
[(1023, True)]
>>> round(ks_statistic([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]), 3)
0.0
"""

from __future__ import annotations

import collections
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeGuard, get_args

import numpy as np
from river import drift

from riverops.schemas.errors import ConfigError, InvalidEventError

__all__ = [
    "DetectorName",
    "DETECTOR_NAMES",
    "Signal",
    "SIGNALS",
    "DataDetector",
    "ConceptAlarm",
    "ConceptDriftDetector",
    "DataAlarm",
    "DataDriftOptions",
    "DataDriftMonitor",
    "ks_statistic",
    "psi",
]

DetectorName = Literal["ADWIN", "PageHinkley", "KSWIN", "DDM"]
DETECTOR_NAMES: tuple[DetectorName, ...] = get_args(DetectorName)
Signal = Literal["error", "positive_error", "negative_error", "log_loss"]
"""What a concept-drift detector watches: ``error`` (0/1 misclassification, or the absolute
error of a regression), ``positive_error`` / ``negative_error`` (the 0/1 error on the
outcomes whose label is the positive / negative class: 1 - recall, the false positive
rate), ``log_loss`` (minus the log of the probability given to the true class)."""
SIGNALS: tuple[Signal, ...] = get_args(Signal)
DataDetector = Literal["PSI", "KS"]

_MISSING = "<missing>"
_OTHER = "<other>"


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


def ks_statistic(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """The two-sample Kolmogorov-Smirnov statistic: the largest gap between the two ECDFs.

    >>> ks_statistic([0.0, 1.0], [2.0, 3.0])
    1.0
    """
    xa = np.sort(np.asarray(a, dtype=float))
    xb = np.sort(np.asarray(b, dtype=float))
    if xa.size == 0 or xb.size == 0:
        return 0.0
    points = np.concatenate([xa, xb])
    cdf_a = np.searchsorted(xa, points, side="right") / xa.size
    cdf_b = np.searchsorted(xb, points, side="right") / xb.size
    return float(np.max(np.abs(cdf_a - cdf_b)))


def psi(reference: np.ndarray, current: np.ndarray, *, epsilon: float = 1e-4) -> float:
    """The population stability index of two bin-count vectors over the same bins.

    Proportions are floored at ``epsilon`` so that an empty bin costs a bounded amount.

    >>> psi(np.array([50, 50]), np.array([50, 50]))
    0.0
    """
    ref = np.maximum(reference / max(reference.sum(), 1), epsilon)
    cur = np.maximum(current / max(current.sum(), 1), epsilon)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


@dataclass(frozen=True, slots=True)
class DataDriftOptions:
    """How data drift is measured.

    The reference is the first ``reference_size`` events (or set explicitly); the current
    window is the last ``window_size`` events after it, evaluated every ``every`` events once
    full. Numeric features get ``bins`` quantile bins of the reference (plus one for missing
    values); categorical ones (strings, booleans) their ``max_categories`` most frequent
    reference categories plus "other" and "missing". An alarm fires when PSI >
    ``psi_threshold`` (0.2: the usual "significant shift") or KS > ``ks_threshold`` (0.2: an
    effect-size threshold well above the KS noise level, about 0.06 at 1000 vs 1000 values),
    once per crossing: the feature re-arms when its statistic falls back to the threshold.
    """

    reference_size: int = 1000
    window_size: int = 1000
    every: int = 200
    bins: int = 10
    max_categories: int = 50
    psi_threshold: float = 0.2
    ks_threshold: float = 0.2
    epsilon: float = 1e-4

    def __post_init__(self) -> None:
        if min(self.reference_size, self.window_size, self.every, self.bins) < 1:
            raise ConfigError("data drift sizes must be >= 1")


@dataclass(frozen=True, slots=True)
class DataAlarm:
    """A feature whose current distribution crossed a threshold against the reference."""

    feature: str
    detector: DataDetector
    statistic: float
    threshold: float
    samples: int


def _is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _numbers(values: Sequence[Any]) -> np.ndarray:
    """The finite numbers among ``values`` (bools, strings, None, NaN and inf left out).

    Exact type checks in one pass, then one vectorised finiteness test: the monitor runs
    this over every feature of its window at each evaluation (20 features x 1000 values
    every 200 events), where a per-value ``_is_number`` cost ~40 us per event.
    """
    array = np.fromiter((v if type(v) is float else _float_or_nan(v) for v in values),
                        dtype=float, count=len(values))
    finite: np.ndarray = array[np.isfinite(array)]
    return finite


def _float_or_nan(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan


class _FeatureReference:
    """One feature's reference: numeric (sorted values, bin edges) or categorical."""

    def __init__(self, values: list[Any], options: DataDriftOptions) -> None:
        present = [v for v in values if v is not None]
        self.numeric = bool(present) and all(_is_number(v) for v in present)
        if self.numeric:
            self.values = np.sort(np.array(present, dtype=float))
            quantiles = np.linspace(0.0, 1.0, options.bins + 1)[1:-1]
            self.edges = np.unique(np.quantile(self.values, quantiles))
        else:
            counts = collections.Counter(_category(v) for v in values)
            counts.pop(_MISSING, None)
            top = [c for c, _ in counts.most_common(options.max_categories)]
            self.categories = {c: i for i, c in enumerate(top)}
        self.counts = self.bin_counts(values)

    def bin_counts(self, values: Sequence[Any], numbers: np.ndarray | None = None) -> np.ndarray:
        """Counts per bin (numeric: quantile bins then missing; categorical: categories,
        other, missing); ``numbers`` is ``_numbers(values)`` when the caller has it."""
        if self.numeric:
            numbers = _numbers(values) if numbers is None else numbers
            bins = np.searchsorted(self.edges, numbers, side="right")
            counts = np.bincount(bins, minlength=self.edges.size + 1).astype(float)
            return np.append(counts, len(values) - numbers.size)
        index = self.categories
        counts = np.zeros(len(index) + 2)  # known categories, other, missing
        for value in values:
            category = _category(value)
            slot = len(index) + 1 if category == _MISSING else index.get(category, len(index))
            counts[slot] += 1
        return counts


def _category(value: Any) -> str:
    return _MISSING if value is None else str(value)


class DataDriftMonitor:
    """PSI and KS per feature of one model's events against a reference window."""

    def __init__(self, options: DataDriftOptions | None = None) -> None:
        self.options = options or DataDriftOptions()
        self.samples = 0
        self._pending: list[Mapping[str, Any]] = []
        self._reference: dict[str, _FeatureReference] | None = None
        self._window: collections.deque[Mapping[str, Any]] = collections.deque(
            maxlen=self.options.window_size
        )
        self._since_reference = 0
        self._alarmed: set[tuple[str, DataDetector]] = set()
        self.scores: dict[str, dict[DataDetector, float]] = {}

    @property
    def has_reference(self) -> bool:
        """Whether the reference window is complete."""
        return self._reference is not None

    def set_reference(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Fix the reference to these feature maps; the current window starts empty."""
        rows = list(rows)
        names = sorted({name for row in rows for name in row})
        self._reference = {
            name: _FeatureReference([row.get(name) for row in rows], self.options)
            for name in names
        }
        self._pending = []
        self._window.clear()
        self._since_reference = 0
        self._alarmed.clear()
        self.scores = {}

    def update(self, features: Mapping[str, Any]) -> list[DataAlarm]:
        """Add one event's features; return the alarms of this evaluation, if one ran."""
        self.samples += 1
        if self._reference is None:
            self._pending.append(features)
            if len(self._pending) >= self.options.reference_size:
                self.set_reference(self._pending)
            return []
        self._window.append(features)
        self._since_reference += 1
        full = len(self._window) == self.options.window_size
        if not full or self._since_reference % self.options.every:
            return []
        return self._evaluate()

    def _evaluate(self) -> list[DataAlarm]:
        assert self._reference is not None
        options = self.options
        alarms: list[DataAlarm] = []
        for name, reference in self._reference.items():
            values = [row.get(name) for row in self._window]
            numbers = _numbers(values) if reference.numeric else None
            scores: dict[DataDetector, float] = {
                "PSI": psi(reference.counts, reference.bin_counts(values, numbers),
                           epsilon=options.epsilon)
            }
            if numbers is not None and numbers.size and reference.values.size:
                scores["KS"] = ks_statistic(reference.values, numbers)
            self.scores[name] = scores
            thresholds: dict[DataDetector, float] = {
                "PSI": options.psi_threshold,
                "KS": options.ks_threshold,
            }
            for detector, statistic in scores.items():
                key = (name, detector)
                if statistic <= thresholds[detector]:
                    self._alarmed.discard(key)
                elif key not in self._alarmed:
                    self._alarmed.add(key)
                    alarms.append(
                        DataAlarm(name, detector, statistic, thresholds[detector], self.samples)
                    )
        return alarms

