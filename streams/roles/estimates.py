"""The scorer's performance estimates: every score of a binary model, before any label.

The scorer is the one place that sees each score as it is made, so it is where the
confidence-based estimate (:mod:`riverops.models.estimate`) is cheapest: a :class:`ScoreTap`
takes each batch's positive-class scores of each served (model, version, variant) as one
array, and every ``every_seconds`` computes the estimated accuracy and ROC AUC and sets
``riverops_estimated_metric`` (and ``riverops_estimated_samples``, and the window's score
histogram ``riverops_estimated_scores``, which lets whoever has labels recalibrate the
estimate: :mod:`riverops.models.recalibrate`). A tap of size 0 is off and does nothing.
The scorer has no labels, so its estimates are ``unchecked``: the calibration check needs
labelled outcomes (``riverops status`` makes it on the feedback).

Examples
--------
>>> tap = ScoreTap(size=1000, min_samples=2)
>>> served = _Served("fraud", 3, "champion")
>>> tap.observe(served, [0, 1, 2], [{"True": 0.9}, {"True": 0.2}, {"True": 0.7}], {})
>>> estimate = tap.estimate()[("fraud", 3, "champion")]
>>> estimate.samples, round(estimate.accuracy, 4), estimate.trust
(3, 0.8, 'unchecked')
"""

from __future__ import annotations

import math
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from riverops.models.estimate import Estimate, ScoreWindow, positive_scores
from riverops.models.recalibrate import score_bins
from riverops.schemas.events import Variant
from riverops.sections import ScorerSettings
from riverops.telemetry import Telemetry

__all__ = ["ScoreTap", "Served", "EstimateKey"]

EstimateKey = tuple[str, int, Variant]
"""model, version, variant"""


class _Record(Protocol):
    @property
    def model(self) -> str: ...


class Served(Protocol):
    """What the tap reads of a served version (``riverops.roles.scorer.ServingModel`` fits)."""

    @property
    def record(self) -> _Record: ...
    @property
    def version(self) -> int: ...
    @property
    def variant(self) -> Variant: ...


@dataclass(frozen=True)
class _Served:
    """A stand-in :class:`Served` for the examples."""

    model: str
    version: int
    variant: Variant

    @property
    def record(self) -> _Served:
        return self


class ScoreTap:
    """Per served binary version and variant, the last ``size`` scores and their estimate."""

    def __init__(self, *, size: int = 5000, min_samples: int = 200,
                 every_seconds: float = 5.0) -> None:
        self.window: ScoreWindow[EstimateKey] | None = (
            ScoreWindow(size=size, min_samples=min_samples) if size else None)
        self.every_seconds = every_seconds
        self._exported_at = -math.inf

    @classmethod
    def from_settings(cls, section: ScorerSettings) -> ScoreTap:
        """The tap of ``settings.scorer`` (off when ``estimate_window`` is 0)."""
        return cls(size=section.estimate_window, min_samples=section.estimate_min_samples,
                   every_seconds=section.estimate_seconds)

    @property
    def on(self) -> bool:
        return self.window is not None

    def observe(self, served: Served, indexes: Sequence[int],
                scores: Sequence[Mapping[str, float]], failed: Container[int]) -> None:
        """Take one job's scores (``scores[k]`` of the record at ``indexes[k]``), less
        those of the ``failed`` records (their predictions are not sent)."""
        if self.window is None:
            return
        if failed:
            scores = [s for i, s in zip(indexes, scores, strict=True) if i not in failed]
        key = (served.record.model, served.version, served.variant)
        self.window.update(key, positive_scores(scores))

    def retain(self, served: Iterable[Served]) -> None:
        """Keep only the windows of ``served`` (a version no longer served has no estimate)."""
        if self.window is not None:
            self.window.retain([(s.record.model, s.version, s.variant) for s in served])

    def estimate(self) -> dict[EstimateKey, Estimate]:
        """Every window's estimate (``unchecked``, or ``too_few``); empty when off."""
        if self.window is None:
            return {}
        return {key: self.window.estimate(key) for key in self.window.keys()}

    def export(self, telemetry: Telemetry, now: float) -> bool:
        """Set the gauges if ``every_seconds`` have passed since the last time (``now``:
        ``time.monotonic()``); an estimate over too few scores exports its count only.
        True when it exported."""
        if self.window is None or now - self._exported_at < self.every_seconds:
            return False
        self._exported_at = now
        window = self.window
        telemetry.export_estimates({
            key: (e.samples, e.metrics() if e.trust != "too_few" else {})
            for key, e in self.estimate().items()
        }, {key: score_bins(window.scores(key)).tolist() for key in window.keys()})
        return True
