"""The promotion policy, pure: promote, keep as challenger, reject, or roll back a model version.

:meth:`PromotionPolicy.decide` compares a retrained candidate with the champion on the same
held-out tail (:func:`riverops.roles.retrainer.training.retrain`); :meth:`PromotionPolicy.check_rollback`
watches a new champion's live rolling metric (the monitor's) against its baseline;
:func:`apply` turns a decision into the registry records that carry it, reason included.

The rules, with ``gain`` = how much better the candidate is (candidate - champion for a
higher-is-better metric, champion - candidate for a lower-is-better one):

- no champion to compare with: **promote** (serving something beats serving nothing);
- the champion has no value of the metric: **challenger** (nothing to judge by);
- the candidate has none (it was not finite) while the champion has: **reject**;
- ``gain < -margin`` (clearly worse): **reject**, whatever the sample count: keeping the
  current champion is the default, so refusing needs less evidence than replacing, and a
  challenger of a clearly worse model would cost its traffic share;
- worse than the champion on a *guard* metric by more than its tolerance: **reject**. A
  ranking metric alone can be fooled: a candidate with ROC AUC 0.93 and accuracy 0.15
  ranks well but flags nearly every event (the demo produced such models), so by default
  accuracy may not fall by more than 0.02;
- ``gain >= margin`` on at least ``min_samples`` holdout samples: **promote**; on fewer
  only when the caller measured a lower confidence bound of the gain (``gain_low``, the
  fast recovery after a drift alarm: :mod:`.recovery`) and it is ``>= margin`` too, so a
  small holdout can prove a large gain but not a small one;
- otherwise (within the margin, or better on too few samples): **challenger**, with
  ``challenger_share`` of the traffic, so the live split gathers the missing evidence.

Rollback is judged by :class:`Probation`: a champion on its first reign is watched for its
first ``rollback_watch_samples`` live outcomes, against the live level of the champion it
replaced (the holdout value it was promoted with when that is unknown), and rolled back
only after ``rollback_patience`` consecutive checks below it: one window of a rare class
(1000 outcomes hold ~35 frauds) is too noisy to act on, and a champion restored by a
rollback is not put on probation again, so rollbacks cannot chain.

``margin`` and ``rollback_drop`` are in the metric's units (``margin_kind="absolute"``) or
fractions of the champion's / baseline's value (``"relative"``, for unbounded metrics such
as MAE).

Examples
--------
>>> policy = PromotionPolicy(metric="roc_auc", margin=0.01, min_samples=500)
>>> policy.decide({"roc_auc": 0.93}, {"roc_auc": 0.90}, holdout_samples=800).action
'promote'
>>> policy.decide({"roc_auc": 0.905}, {"roc_auc": 0.90}, holdout_samples=800).action
'challenger'
>>> policy.decide({"roc_auc": 0.85}, {"roc_auc": 0.90}, holdout_samples=800).action
'reject'
>>> policy.decide({"roc_auc": 0.93, "accuracy": 0.15}, {"roc_auc": 0.90, "accuracy": 0.97},
...               holdout_samples=800).reason  # doctest: +ELLIPSIS
'...accuracy 0.15 vs champion 0.97: worse by 0.82 > guard 0.02'
>>> policy.check_rollback(live_metric=0.80, baseline_metric=0.90, samples=1000).action
'rollback'
>>> policy.check_rollback(live_metric=0.88, baseline_metric=0.90, samples=1000) is None
True
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from riverops.models.registry import Registry
from riverops.schemas.errors import ConfigError, RegistryError
from riverops.schemas.events import ModelVersion
from riverops.sections import PolicySettings

__all__ = [
    "Action",
    "MarginKind",
    "HIGHER_IS_BETTER",
    "DEFAULT_GUARDS",
    "Decision",
    "PromotionPolicy",
    "Probation",
    "apply",
]

Action = Literal["promote", "challenger", "reject", "rollback"]
MarginKind = Literal["absolute", "relative"]

DEFAULT_GUARDS: Mapping[str, float] = MappingProxyType({"accuracy": 0.02})
"""Guard metric -> how much worse than the champion a candidate may be on it."""

HIGHER_IS_BETTER: Mapping[str, bool] = MappingProxyType(
    {
        "accuracy": True, "roc_auc": True, "precision": True, "recall": True, "f1": True,
        "macro_f1": True, "r2": True,
        "log_loss": False, "mae": False, "rmse": False,
    }
)
"""Every metric a policy can judge by (the retrainer's and the monitor's names) and its
direction."""


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with a model version and why; ``share`` is a challenger's traffic share."""

    action: Action
    reason: str
    share: float | None = None


def _fmt(value: float) -> str:
    return f"{value:.6g}"


class PromotionPolicy:
    """Promotion and rollback thresholds on one metric (see the module docstring).

    ``min_samples`` holdout samples are needed to promote over a champion;
    ``rollback_min_samples`` live samples to roll back. Options are checked here, so a
    bad configuration fails at start, not at the first retrain.
    """

    def __init__(
        self,
        *,
        metric: str = "roc_auc",
        margin: float = 0.01,
        min_samples: int = 500,
        challenger_share: float = 0.1,
        rollback_drop: float = 0.05,
        rollback_min_samples: int = 500,
        margin_kind: MarginKind = "absolute",
        guards: Mapping[str, float] | None = None,
        rollback_patience: int = 3,
        rollback_watch_samples: int = 20_000,
    ) -> None:
        if metric not in HIGHER_IS_BETTER:
            raise ConfigError(
                f"unknown policy metric {metric!r}; known: {', '.join(sorted(HIGHER_IS_BETTER))}"
            )
        if not (math.isfinite(margin) and margin >= 0):
            raise ConfigError(f"margin must be a finite number >= 0, got {margin}")
        if not (math.isfinite(rollback_drop) and rollback_drop >= 0):
            raise ConfigError(f"rollback_drop must be a finite number >= 0, got {rollback_drop}")
        if not 0 < challenger_share < 1:
            raise ConfigError(f"challenger_share must be in (0, 1), got {challenger_share}")
        if min_samples < 0 or rollback_min_samples < 0:
            raise ConfigError("min_samples and rollback_min_samples must be >= 0")
        if margin_kind not in ("absolute", "relative"):
            raise ConfigError(f"margin_kind must be 'absolute' or 'relative', got {margin_kind!r}")
        guards = dict(DEFAULT_GUARDS if guards is None else guards)
        for name, tolerance in guards.items():
            if name not in HIGHER_IS_BETTER:
                raise ConfigError(f"unknown guard metric {name!r}; known: "
                                  f"{', '.join(sorted(HIGHER_IS_BETTER))}")
            if not (math.isfinite(tolerance) and tolerance >= 0):
                raise ConfigError(f"guard {name} must be a finite number >= 0, got {tolerance}")
        if rollback_patience < 1 or rollback_watch_samples < 1:
            raise ConfigError("rollback_patience and rollback_watch_samples must be >= 1")
        self.metric = metric
        self.margin = margin
        self.min_samples = min_samples
        self.challenger_share = challenger_share
        self.rollback_drop = rollback_drop
        self.rollback_min_samples = rollback_min_samples
        self.margin_kind: MarginKind = margin_kind
        self.guards: Mapping[str, float] = MappingProxyType(guards)
        self.rollback_patience = rollback_patience
        self.rollback_watch_samples = rollback_watch_samples

    @classmethod
    def from_settings(cls, section: PolicySettings, *,
                      guards: Mapping[str, float] | None = None) -> PromotionPolicy:
        """The policy of a settings section (``settings.retrainer.policy``, i.e.
        ``RIVEROPS_RETRAINER__POLICY__<KNOB>``); the guards are code only (a mapping of
        metric to tolerance, :data:`DEFAULT_GUARDS` when None).

        >>> PromotionPolicy.from_settings(PolicySettings(metric="accuracy", margin=0.02)).margin
        0.02
        """
        return cls(
            metric=section.metric, margin=section.margin, margin_kind=section.margin_kind,
            min_samples=section.min_samples, challenger_share=section.challenger_share,
            rollback_drop=section.rollback_drop, rollback_min_samples=section.rollback_min_samples,
            rollback_patience=section.rollback_patience,
            rollback_watch_samples=section.rollback_watch_samples, guards=guards,
        )

    @property
    def higher_is_better(self) -> bool:
        return HIGHER_IS_BETTER[self.metric]

    def __repr__(self) -> str:
        return (
            f"PromotionPolicy(metric={self.metric!r}, margin={self.margin}, "
            f"min_samples={self.min_samples}, challenger_share={self.challenger_share}, "
            f"rollback_drop={self.rollback_drop}, "
            f"rollback_min_samples={self.rollback_min_samples}, "
            f"margin_kind={self.margin_kind!r}, guards={dict(self.guards)}, "
            f"rollback_patience={self.rollback_patience}, "
            f"rollback_watch_samples={self.rollback_watch_samples})"
        )

    def _gain(self, new: float, reference: float) -> float:
        """How much better ``new`` is than ``reference`` (negative: worse)."""
        return new - reference if self.higher_is_better else reference - new

    def _threshold(self, amount: float, reference: float) -> float:
        return amount * abs(reference) if self.margin_kind == "relative" else amount

    def _value(self, metrics: Mapping[str, float] | None) -> float | None:
        value = (metrics or {}).get(self.metric)
        return float(value) if value is not None and math.isfinite(value) else None

    def decide(
        self,
        candidate_metrics: Mapping[str, float],
        champion_metrics: Mapping[str, float] | None,
        holdout_samples: int,
        *,
        gain_low: float | None = None,
    ) -> Decision:
        """Promote, keep as challenger or reject a candidate, from both models' metrics on
        the same holdout (``champion_metrics`` empty or None: there is no champion);
        ``gain_low``: a lower confidence bound of the gain, which may stand in for
        ``min_samples`` (see the module docstring).

        >>> PromotionPolicy(min_samples=500).decide({"roc_auc": 0.9}, {"roc_auc": 0.5},
        ...     holdout_samples=120, gain_low=0.25).reason  # doctest: +ELLIPSIS
        '...better by 0.4 >= margin 0.01, its lower bound 0.25 too (fewer than min_samples=500)'
        """
        m = self.metric
        if not champion_metrics:
            return Decision("promote", "no champion to compare with")
        champion, candidate = self._value(champion_metrics), self._value(candidate_metrics)
        if champion is None:
            return Decision("challenger", f"the champion has no {m} on the holdout to compare "
                            "with", self.challenger_share)
        if candidate is None:
            return Decision("reject", f"the candidate has no finite {m} on the holdout "
                            f"(champion {_fmt(champion)})")
        gain = self._gain(candidate, champion)
        margin = self._threshold(self.margin, champion)
        versus = (f"candidate {m} {_fmt(candidate)} vs champion {_fmt(champion)} on "
                  f"{holdout_samples} holdout samples")
        if gain < -margin:
            return Decision("reject", f"{versus}: worse by {_fmt(-gain)} > margin {_fmt(margin)}")
        broken = self._broken_guard(candidate_metrics, champion_metrics)
        if broken:
            return Decision("reject", f"{versus}, but {broken}")
        if gain >= margin and holdout_samples >= self.min_samples:
            return Decision("promote", f"{versus}: better by {_fmt(gain)} >= margin {_fmt(margin)}")
        if gain >= margin and gain_low is not None and gain_low >= margin:
            return Decision("promote", f"{versus}: better by {_fmt(gain)} >= margin {_fmt(margin)}, "
                            f"its lower bound {_fmt(gain_low)} too (fewer than "
                            f"min_samples={self.min_samples})")
        if gain >= margin:
            why = f"better by {_fmt(gain)} but on fewer than min_samples={self.min_samples}"
            if gain_low is not None:
                why += f" and its lower bound {_fmt(gain_low)} < margin {_fmt(margin)}"
        else:
            why = f"within margin {_fmt(margin)} (gain {_fmt(gain)})"
        return Decision("challenger", f"{versus}: {why}; challenger at "
                        f"{self.challenger_share:.0%} of traffic", self.challenger_share)

    def best(self, candidates: list[Mapping[str, float]]) -> int:
        """The index of the best metrics by the policy's metric (the first on ties or when
        none has a value).

        >>> PromotionPolicy(metric="log_loss").best([{"log_loss": 0.4}, {"log_loss": 0.2}])
        1
        """
        def key(i: int) -> tuple[bool, float]:
            value = self._value(candidates[i])
            if value is None:
                return (False, 0.0)
            return (True, value if self.higher_is_better else -value)
        return max(range(len(candidates)), key=lambda i: (key(i), -i))

    def _broken_guard(self, candidate: Mapping[str, float], champion: Mapping[str, float]) -> str:
        """Why the candidate fails a guard metric ('' when it passes them all)."""
        for name, tolerance in self.guards.items():
            new, old = candidate.get(name), champion.get(name)
            if new is None or old is None or not (math.isfinite(new) and math.isfinite(old)):
                continue
            worse = old - new if HIGHER_IS_BETTER[name] else new - old
            if worse > tolerance:
                return (f"candidate {name} {_fmt(new)} vs champion {_fmt(old)}: worse by "
                        f"{_fmt(worse)} > guard {_fmt(tolerance)}")
        return ""

    def check_rollback(
        self, *, live_metric: float | None, baseline_metric: float | None, samples: int
    ) -> Decision | None:
        """A rollback decision when a new champion's live rolling metric fell below its
        baseline (the holdout value it was promoted with, or the previous champion's live
        level) by more than ``rollback_drop`` over at least ``rollback_min_samples`` live
        samples; None otherwise, including when either value is missing or not finite.

        The caller decides how long a champion counts as new (e.g. until it has served a
        few windows); the policy only judges the numbers.
        """
        if samples < self.rollback_min_samples:
            return None
        if live_metric is None or baseline_metric is None:
            return None
        if not (math.isfinite(live_metric) and math.isfinite(baseline_metric)):
            return None
        drop = -self._gain(live_metric, baseline_metric)
        limit = self._threshold(self.rollback_drop, baseline_metric)
        if drop <= limit:
            return None
        return Decision(
            "rollback",
            f"live {self.metric} {_fmt(live_metric)} over {samples} samples is "
            f"{_fmt(drop)} worse than its baseline {_fmt(baseline_metric)} "
            f"(> rollback_drop {_fmt(limit)})",
        )

    def baseline(self, record: ModelVersion) -> float | None:
        """The value of the policy's metric a registry record was promoted with, if any."""
        return self._value(record.metrics)


@dataclass
class Probation:
    """A new champion under watch: rolled back after ``rollback_patience`` consecutive
    live checks under ``baseline`` by more than ``rollback_drop``, until it has served
    ``rollback_watch_samples`` outcomes (then it has proved itself, and a later
    degradation is a case for retraining, not for going back).

    >>> policy = PromotionPolicy(rollback_patience=2)
    >>> watch = Probation(baseline=0.95)
    >>> watch.observe(policy, live_metric=0.80, samples=1000) is None  # one bad window
    True
    >>> watch.observe(policy, live_metric=0.90, samples=2000) is None  # recovered: reset
    True
    >>> watch.observe(policy, live_metric=0.80, samples=3000) is None
    True
    >>> watch.observe(policy, live_metric=0.80, samples=4000).action
    'rollback'
    """

    baseline: float | None
    breaches: int = 0
    over: bool = False

    def observe(self, policy: PromotionPolicy, *, live_metric: float | None,
                samples: int) -> Decision | None:
        """Fold one live check in; the rollback decision when patience runs out."""
        if self.over:
            return None
        if samples > policy.rollback_watch_samples:
            self.over = True
            return None
        breach = policy.check_rollback(live_metric=live_metric, baseline_metric=self.baseline,
                                       samples=samples)
        self.breaches = self.breaches + 1 if breach else 0
        if breach is None or self.breaches < policy.rollback_patience:
            return None
        self.over = True
        return Decision("rollback", f"{breach.reason}, {self.breaches} checks in a row")


def apply(
    decision: Decision, registry: Registry, model: str, version: int, *, by: str, reason: str
) -> list[ModelVersion]:
    """The registry records that carry out ``decision`` for ``model:version``.

    Built with the :class:`~riverops.models.registry.Registry` operations, so the same rules hold
    as for a manual change (a rejected version cannot be promoted, a champion cannot be
    restaged); the caller publishes them. Every record's reason is ``reason`` (the
    context, e.g. the retrain request) followed by the decision's. ``version`` must
    already be in the registry (fold its ``new_version`` records first); for a rollback
    it must be the current champion, else the decision is stale and RegistryError says so.
    """
    why = f"{reason}: {decision.reason}" if reason else decision.reason
    if decision.action == "promote":
        return registry.promote(model, version, by=by, reason=why)
    if decision.action == "challenger":
        return registry.set_stage(model, version, "challenger", by=by, reason=why,
                                  share=decision.share)
    if decision.action == "reject":
        return registry.set_stage(model, version, "rejected", by=by, reason=why)
    current = registry.champion(model)
    if current is None or current.version != version:
        now = f"v{current.version}" if current else "none"
        raise RegistryError(
            f"stale rollback of {model}:{version}: it is not the champion (the champion is {now})"
        )
    return registry.rollback(model, by=by, reason=why)
