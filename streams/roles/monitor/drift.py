"""Drift detection: concept drift on a model's signals, data drift on its features.

Concept drift lives in :mod:`~riverops.roles.monitor.concept` (re-exported here). Data
drift compares each feature's recent values with a reference window, by the population
stability index (PSI, every feature) and the two-sample Kolmogorov-Smirnov statistic
(KS, numeric features).

Examples
--------
>>> round(ks_statistic([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]), 3)
0.0
"""

from __future__ import annotations

import collections
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeGuard

import numpy as np

from riverops.roles.monitor.concept import (
    DETECTOR_NAMES,
    SIGNALS,
    ConceptAlarm,
    ConceptDriftDetector,
    DetectorName,
    Signal,
)
from riverops.schemas.errors import ConfigError

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

DataDetector = Literal["PSI", "KS"]

_MISSING = "<missing>"
_OTHER = "<other>"


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
    full, and no sooner than ``min_seconds`` of stream time (the events' label times, when
    the caller gives them) after the last evaluation: at thousands of events a second an
    evaluation every 200 events was about a quarter of the monitor's CPU
    (``bench.profile_monitor``) for statistics no one reads faster than every second (at
    200 events a second or fewer it changes nothing). Numeric features get ``bins``
    quantile bins of the reference (plus one for missing values); categorical ones (strings, booleans) their ``max_categories`` most frequent
    reference categories plus "other" and "missing". An alarm fires when PSI >
    ``psi_threshold`` (0.2: the usual "significant shift") or KS > ``ks_threshold`` (0.2: an
    effect-size threshold well above the KS noise level, about 0.06 at 1000 vs 1000 values),
    once per crossing: the feature re-arms when its statistic falls back to the threshold.
    """

    reference_size: int = 1000
    window_size: int = 1000
    every: int = 200
    min_seconds: float = 1.0
    bins: int = 10
    max_categories: int = 50
    psi_threshold: float = 0.2
    ks_threshold: float = 0.2
    epsilon: float = 1e-4

    def __post_init__(self) -> None:
        if min(self.reference_size, self.window_size, self.every, self.bins) < 1:
            raise ConfigError("data drift sizes must be >= 1")
        if not self.min_seconds >= 0:
            raise ConfigError(f"data drift min_seconds must be >= 0, got {self.min_seconds}")


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

    Exact type checks in one pass, then one vectorised finiteness test (the reference's
    bins; a window's numeric features are kept as floats already, see
    :meth:`DataDriftMonitor.update`).
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
            # the reference's own ECDF at its values, for KS against any window
            self.own_cdf = np.searchsorted(self.values, self.values, side="right") / max(self.values.size, 1)
        else:
            counts = collections.Counter(_category(v) for v in values)
            counts.pop(_MISSING, None)
            top = [c for c, _ in counts.most_common(options.max_categories)]
            self.categories = {c: i for i, c in enumerate(top)}
        self.counts = self.bin_counts(values)

    def bin_counts(self, values: Sequence[Any]) -> np.ndarray:
        """Counts per bin (numeric: quantile bins then missing; categorical: categories,
        other, missing)."""
        if self.numeric:
            numbers = _numbers(values)
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

    def sorted_bin_counts(self, numbers: np.ndarray, missing: int) -> np.ndarray:
        """:meth:`bin_counts` of a numeric window from its finite values, sorted, and
        the count of the others: the same counts, from one search per bin edge."""
        # values under each edge; the array methods, not np.searchsorted and np.diff: their
        # wrappers cost as much as the work on a 1,000-value window
        bounds = np.concatenate(([0], numbers.searchsorted(self.edges, side="left"), [numbers.size]))
        counts = np.empty(bounds.size)
        counts[:-1] = bounds[1:] - bounds[:-1]
        counts[-1] = missing
        return counts

    def ks_sorted(self, numbers: np.ndarray) -> float:
        """:func:`ks_statistic` of the reference and the sorted finite ``numbers`` (the
        same gaps: both ECDFs at every point of both samples)."""
        reference = self.values
        if reference.size == 0 or numbers.size == 0:
            return 0.0
        at_reference = abs(self.own_cdf - numbers.searchsorted(reference, side="right") / numbers.size)
        at_numbers = abs(reference.searchsorted(numbers, side="right") / reference.size
                         - numbers.searchsorted(numbers, side="right") / numbers.size)
        return float(max(at_reference.max(), at_numbers.max()))


def _category(value: Any) -> str:
    return _MISSING if value is None else str(value)


class DataDriftMonitor:
    """PSI and KS per feature of one model's events against a reference window."""

    def __init__(self, options: DataDriftOptions | None = None) -> None:
        self.options = options or DataDriftOptions()
        self.samples = 0
        self._pending: list[Mapping[str, Any]] = []
        self._reference: dict[str, _FeatureReference] | None = None
        # the current window in a ring, each event's values read once, when it arrives: the
        # numeric features as one array (a row per feature; NaN for what is not a number),
        # the categorical ones as a list each
        self._numeric: list[str] = []
        self._block = np.empty((0, 0))
        self._columns: dict[str, list[Any]] = {}
        self._filled = self._next = 0
        self._since_reference = 0
        self._evaluated_at = -math.inf  # stream seconds of the last evaluation
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
        size = self.options.window_size
        self._numeric = [name for name, ref in self._reference.items() if ref.numeric]
        self._block = np.full((len(self._numeric), size), np.nan)
        self._columns = {name: [None] * size for name, ref in self._reference.items() if not ref.numeric}
        self._categorical = list(self._columns.items())
        self._filled = self._next = 0
        self._pending = []
        self._since_reference = 0
        self._evaluated_at = -math.inf
        self._alarmed.clear()
        self.scores = {}

    def update(self, features: Mapping[str, Any], seconds: float | None = None) -> list[DataAlarm]:
        """Add one event's features (``seconds``: its stream time, for ``min_seconds``);
        return the alarms of this evaluation, if one ran."""
        self.samples += 1
        if self._reference is None:
            self._pending.append(features)
            if len(self._pending) >= self.options.reference_size:
                self.set_reference(self._pending)
            return []
        at, get = self._next, features.get
        if self._numeric:  # exact types first: a bool is not a number here
            self._block[:, at] = [v if type(v := get(name)) is float else _float_or_nan(v) for name in self._numeric]
        for name, column in self._categorical:
            column[at] = get(name)
        size = self.options.window_size
        self._next = (at + 1) % size
        self._filled = min(self._filled + 1, size)
        self._since_reference += 1
        if self._filled < size or self._since_reference % self.options.every:
            return []
        if seconds is not None:  # at a multiple of ``every``, once enough time has passed
            if seconds - self._evaluated_at < self.options.min_seconds - 1e-6:  # ms as float seconds
                return []
            self._evaluated_at = seconds
        return self._evaluate()

    def _evaluate(self) -> list[DataAlarm]:
        """PSI and KS of every feature's window against its reference. The numeric
        features are sorted together, a row each (NaN, what is not a finite number, sorts
        last); each feature's statistics then come from searches in its sorted values."""
        assert self._reference is not None
        options = self.options
        scores_of: dict[str, dict[DataDetector, float]] = {}
        if self._numeric:
            block = np.where(np.isfinite(self._block), self._block, np.nan)  # inf is no number either
            block.sort(axis=1)
            finite = block.shape[1] - np.isnan(block).sum(axis=1)
            for name, row, n in zip(self._numeric, block, finite.tolist(), strict=True):
                reference, numbers = self._reference[name], row[:n]
                scores: dict[DataDetector, float] = {"PSI": psi(
                    reference.counts, reference.sorted_bin_counts(numbers, row.size - n), epsilon=options.epsilon)}
                if n and reference.values.size:
                    scores["KS"] = reference.ks_sorted(numbers)
                scores_of[name] = scores
        for name, _ in self._categorical:
            reference = self._reference[name]
            scores_of[name] = {"PSI": psi(reference.counts, reference.bin_counts(self._columns[name]),
                                          epsilon=options.epsilon)}
        alarms: list[DataAlarm] = []
        for name in self._reference:
            scores = self.scores[name] = scores_of[name]
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

