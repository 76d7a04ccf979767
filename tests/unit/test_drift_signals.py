"""The signals concept drift watches and the rule that says an alarm is worth acting on."""

from __future__ import annotations

import math
import random

import pytest

from riverops.roles.monitor.drift import ConceptDriftDetector
from riverops.roles.monitor.signals import (
    DEFAULT_SIGNALS,
    LOG_LOSS_CAP,
    ConceptWatch,
    check_signals,
    signal_values,
)
from riverops.roles.monitor.windows import outcome_of
from riverops.schemas.errors import ConfigError


def binary(label: bool, p: float | None) -> dict[str, float]:
    made = {"prediction": None if p is None else p >= 0.5,
            "scores": {} if p is None else {"True": p, "False": 1 - p}}
    outcome = outcome_of("binary", label, made)
    assert outcome is not None
    return signal_values("binary", outcome, ("error", "positive_error", "negative_error", "log_loss"))


def test_binary_signals_of_one_outcome() -> None:
    assert binary(True, 0.8) == pytest.approx({"error": 0.0, "positive_error": 0.0, "log_loss": -math.log(0.8)})
    assert binary(False, 0.8) == pytest.approx({"error": 1.0, "negative_error": 1.0, "log_loss": -math.log(0.2)})
    unscored = outcome_of("binary", True, {"prediction": False, "scores": {}})  # no score: no log-loss
    assert unscored is not None
    assert signal_values("binary", unscored, ("positive_error", "log_loss")) == {"positive_error": 1.0}
    # a confident miss costs the cap, not infinity
    assert binary(True, 0.0)["log_loss"] == pytest.approx(LOG_LOSS_CAP) == pytest.approx(math.log(1000))


def test_multiclass_and_regression_signals() -> None:
    outcome = outcome_of("multiclass", "dog", {"prediction": None, "scores": {"cat": 0.7, "dog": 0.3}})
    assert outcome is not None
    assert signal_values("multiclass", outcome, ("error", "log_loss")) == pytest.approx(
        {"error": 1.0, "log_loss": -math.log(0.3)})
    outcome = outcome_of("regression", 3.0, {"prediction": 1.5, "scores": {}})
    assert outcome is not None
    assert signal_values("regression", outcome, ("error",)) == {"error": 1.5}


def test_signals_are_checked_per_task_and_detector() -> None:
    assert check_signals("binary", ["log_loss", "positive_error"]) == ("positive_error", "log_loss")
    for task, signals in (("multiclass", ["positive_error"]), ("regression", ["log_loss"]),
                          ("binary", []), ("binary", ["error", "error"]), ("binary", ["recall"])):
        with pytest.raises(ConfigError):
            check_signals(task, signals)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        check_signals("binary", ["error", "log_loss"], "DDM")
    assert check_signals("binary", ["error", "negative_error"], "DDM") == ("error", "negative_error")
    assert ConceptWatch("regression").signals == DEFAULT_SIGNALS["regression"] == ("error",)


def level_shift(before: float, after: float, *, n: int = 3000, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [float(rng.random() < before) for _ in range(n)] + [float(rng.random() < after) for _ in range(n)]


def alarms_of(detector: ConceptDriftDetector, stream: list[float]) -> list[tuple[int, bool, bool]]:
    return [(i, a.rising, a.worse) for i, x in enumerate(stream) if (a := detector.update(x))]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_rise_is_worse_relative_to_its_own_level(seed: int) -> None:
    """1% -> 3% on a minority class counts; 40% -> 44% is a rise but not 20% above its level."""
    small_level = alarms_of(ConceptDriftDetector(min_relative_rise=0.2, rise_z=3.0), level_shift(0.01, 0.03, n=6000, seed=seed))
    assert any(rising and worse and i >= 6000 for i, rising, worse in small_level)
    high_level = ConceptDriftDetector(min_relative_rise=0.2, rise_z=3.0)
    found = alarms_of(high_level, level_shift(0.40, 0.44, n=20_000, seed=seed))
    assert not any(worse for _, _, worse in found)
    no_rule = alarms_of(ConceptDriftDetector(), level_shift(0.40, 0.44, n=20_000, seed=seed))
    assert any(worse and i >= 20_000 for i, _, worse in no_rule)  # ADWIN does see it


def test_an_alarm_names_its_signal_and_reports_its_levels_unscaled() -> None:
    rng = random.Random(4)
    stream = [rng.uniform(0.0, 0.5) for _ in range(2000)] + [rng.uniform(2.0, 6.0) for _ in range(500)]
    detector = ConceptDriftDetector(signal="log_loss", scale=LOG_LOSS_CAP, min_relative_rise=0.2, rise_z=3.0)
    alarm = next(a for x in stream if (a := detector.update(x)))
    assert (alarm.signal, alarm.rising, alarm.worse) == ("log_loss", True, True)
    assert alarm.error_before == pytest.approx(0.25, abs=0.05) and alarm.error_after > 1.0
    assert alarm.z > 3.0 and 2000 < alarm.samples < 2100
    with pytest.raises(ConfigError):
        ConceptDriftDetector(signal="recall")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        ConceptDriftDetector(scale=0.0)


def test_rising_but_not_worse_alarms_keep_the_baseline() -> None:
    """An alarm not acted on leaves ADWIN its window: a rise that goes on is caught later,
    against the level before it, and published once."""
    rng = random.Random(9)
    stream = [float(rng.random() < 0.10) for _ in range(4000)]
    stream += [float(rng.random() < 0.13) for _ in range(1500)]  # a faint rise first
    stream += [float(rng.random() < 0.40) for _ in range(1500)]
    detector = ConceptDriftDetector(min_relative_rise=1.0, rise_z=3.0)
    found = [(i, a) for i, x in enumerate(stream) if (a := detector.update(x))]
    worse = [(i, a) for i, a in found if a.worse]
    assert len(worse) == 1 and worse[0][0] >= 5500
    assert worse[0][1].error_before < 0.2  # measured from the old level, not the risen one


def test_the_watch_feeds_each_signal_its_outcomes() -> None:
    watch = ConceptWatch("binary", min_relative_rise=0.2, rise_z=3.0)
    rng = random.Random(5)
    alarms = []
    for i in range(12_000):
        positive = rng.random() < 0.3
        p = (0.9 if positive else 0.1) if i < 6000 else (0.2 if positive else 0.1)  # positives missed
        outcome = outcome_of("binary", positive, {"prediction": None, "scores": {"True": p}})
        assert outcome is not None
        alarms += [(i, a.signal) for a in watch.update(outcome) if a.worse]
    signals = {signal for i, signal in alarms if i >= 6000}
    assert signals == {"positive_error", "log_loss"} and all(i >= 6000 for i, _ in alarms)
    assert watch.detectors["positive_error"].samples == pytest.approx(0.3 * 12_000, rel=0.05)
    assert watch.worse == len(alarms) and watch.alarms >= watch.worse
