"""The demo's card stream (issue 17's case): at the change of fraud pattern the first
alarm on the 0/1 error measures a rise under the retrainer's ``min_error_rise`` (0.02),
so it was not acted on (the error rate goes from 1.4% to a few percent: the new fraud is
3.5% of the traffic and mostly missed); the default signals act on the change within
1,000 labelled events.

The demo's default run, replayed in event order without Kafka: a logreg champion trained
on 20,000 warm-up transactions, then frozen; 24,000 transactions of the old fraud pattern
(seed 42) and the new one after. Outcomes are fed from transaction 14,000 on (10,000
before the change: a stretch the detectors must stay quiet over). Measured figures are
printed (``pytest -s``) and quoted in docs/architecture.md.
"""

from __future__ import annotations

import statistics

from riverops.demo.cardgen import CardStream
from riverops.models.specs import get_spec
from riverops.roles.monitor import ConceptWatch
from riverops.roles.monitor.windows import outcome_of
from riverops.sections import MonitorSettings, RetrainerSettings

SEED, WARMUP, CHANGE, FROM, END = 42, 20_000, 24_000, 14_000, 27_000
MAX_DELAY = 1000


def test_the_default_signals_act_on_the_demos_fraud_pattern_change() -> None:
    settings, min_error_rise = MonitorSettings(), RetrainerSettings().min_error_rise
    champion = get_spec("logreg").build(seed=SEED)
    for tx in CardStream(events=WARMUP, seed=SEED + 1000, id_prefix="warm"):
        champion.learn_one(tx.features, tx.label)
    new = ConceptWatch("binary", settings.binary_signals, detector=settings.detector,
                       min_relative_rise=settings.min_relative_rise, rise_z=settings.rise_z)
    old = ConceptWatch("binary", ["error"])  # before issue 17: the 0/1 error, every rise published
    acted, old_rises, errors = [], [], []
    for i, tx in enumerate(CardStream(events=END, drift_at=CHANGE, seed=SEED)):
        if i < FROM:
            continue
        p = champion.predict_proba_one(tx.features).get(True, 0.0)
        outcome = outcome_of("binary", tx.label, {"prediction": p >= 0.5, "scores": {"True": p}})
        assert outcome is not None
        errors.append((i >= CHANGE, outcome.error))
        acted += [(i - CHANGE, a.signal) for a in new.update(outcome) if a.worse]
        old_rises += [(i - CHANGE, a.error_after - a.error_before) for a in old.update(outcome) if a.rising]
    before = statistics.fmean(e for late, e in errors if not late)
    after = statistics.fmean(e for late, e in errors if late)
    print(f"\ncard stream seed {SEED}: error {before:.4f} -> {after:.4f}; acted on (delay, signal) "
          f"{acted}; the error's rises (delay, rise) {[(d, round(r, 4)) for d, r in old_rises]}")
    first_old = next((rise for delay, rise in old_rises if delay >= 0), None)
    assert first_old is not None and first_old < min_error_rise  # the old alarm was not acted on
    assert acted and 0 <= acted[0][0] <= MAX_DELAY  # none before the change, then one soon
    assert acted[0][1] in ("positive_error", "log_loss")
