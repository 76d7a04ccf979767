"""Metrics per segment: the rolling metrics of each value of a configured feature.

A regional or fairness problem hides in a model's overall figure: one country's recall can
halve while the whole stays within a point. With ``segment_by`` set (feature names), the
monitor keeps, per (model, version, variant), a count window of the task's metrics for each
value of each of those features. The values of one feature are capped per model: the first
``max_values`` seen get a window of their own, later ones share :data:`OTHER`, so a feature
with a value per card (a mistake of configuration) cannot grow the state or the gauges
without bound. A record without the feature counts under :data:`MISSING`.

Values are strings: a string as it is, a bool as ``true``/``false``, a number by ``%g`` (a
numeric feature makes sense only when it takes few values, a bucket say).

Examples
--------
>>> from riverops.roles.monitor.windows import outcome_of
>>> segments = Segments(SegmentOptions(features=("country",), max_values=2, window_size=100))
>>> key = ("fraud", 1, "champion")
>>> right = outcome_of("binary", True, {"prediction": True, "scores": {}})
>>> wrong = outcome_of("binary", True, {"prediction": False, "scores": {}})
>>> for country, outcome in [("FR", right), ("FR", wrong), ("DE", right), ("IT", wrong), ("ES", right)]:
...     segments.update(key, "binary", {"country": country}, outcome)
>>> [(s.value, s.samples, s.metrics["accuracy"]) for s in segments.rows(key)]
[('(other)', 2, 0.5), ('DE', 1, 1.0), ('FR', 2, 0.5)]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from riverops.roles.monitor.windows import CountWindow, Outcome
from riverops.schemas.events import Task, Variant

__all__ = ["SegmentOptions", "SegmentStatus", "Segments", "segment_value", "OTHER", "MISSING"]

OTHER = "(other)"
"""The segment of the values past a feature's cap."""
MISSING = "(missing)"
"""The segment of records without the feature (or with a null)."""

Key = tuple[str, int, Variant]


class SegmentOptions(NamedTuple):
    features: tuple[str, ...]
    max_values: int = 50
    window_size: int = 1000


class SegmentStatus(NamedTuple):
    """One segment of one (model, version, variant): its metrics over its count window."""

    feature: str
    value: str
    samples: int
    """outcomes of this segment seen so far"""
    metrics: Mapping[str, float]


def segment_value(value: Any) -> str:
    """The segment a feature value falls in.

    >>> segment_value("FR"), segment_value(True), segment_value(3.0), segment_value(None)
    ('FR', 'true', '3', '(missing)')
    """
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"{value:g}"
    return str(value)


@dataclass(slots=True)
class _Window:
    counted: CountWindow
    samples: int = 0


@dataclass
class Segments:
    """Count windows per segment of every key, values capped per (model, feature)."""

    options: SegmentOptions
    _admitted: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    _windows: dict[Key, dict[tuple[str, str], _Window]] = field(default_factory=dict)

    def _segment(self, model: str, feature: str, value: Any) -> str:
        name = segment_value(value)
        admitted = self._admitted.setdefault((model, feature), set())
        if name in admitted:
            return name
        if len(admitted) < self.options.max_values:
            admitted.add(name)
            return name
        return OTHER

    def update(self, key: Key, task: Task, features: Mapping[str, Any], outcome: Outcome) -> None:
        windows = self._windows.setdefault(key, {})
        for feature in self.options.features:
            segment = (feature, self._segment(key[0], feature, features.get(feature)))
            window = windows.get(segment)
            if window is None:
                window = windows[segment] = _Window(CountWindow(task, self.options.window_size))
            window.counted.update(outcome)
            window.samples += 1

    def rows(self, key: Key) -> list[SegmentStatus]:
        """The key's segments, by feature and value."""
        return [SegmentStatus(feature, value, window.samples, window.counted.metrics().values())
                for (feature, value), window in sorted(self._windows.get(key, {}).items())]

    def forget(self, models: Iterable[str]) -> None:
        gone = set(models)
        self._windows = {key: w for key, w in self._windows.items() if key[0] not in gone}
        self._admitted = {key: v for key, v in self._admitted.items() if key[0] not in gone}
