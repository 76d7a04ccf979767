"""Concept drift on error streams (rises only) and data drift by PSI and KS."""

from __future__ import annotations

import functools
import itertools
import random

import numpy as np
import pytest
from river import linear_model, preprocessing
from river.datasets import synth

from riverops.roles.monitor.drift import (
    ConceptDriftDetector,
    DataAlarm,
    DataDriftMonitor,
    DataDriftOptions,
    DetectorName,
    ks_statistic,
    psi,
)
from riverops.schemas.errors import ConfigError, InvalidEventError

DRIFT_AT = 5000
# Measured with ADWIN (seeds 1-5): 599, 311, 695, 151, 311 labelled events after the switch;
# PageHinkley: 150, 124, 513, 192, 303. The asserted bound leaves room above the worst.
MAX_DELAY = 1000


def alarms(detector: ConceptDriftDetector, stream: list[float]) -> list[tuple[int, bool]]:
    """(index, rising) of every alarm the detector raises on the stream."""
    return [(i, alarm.rising) for i, x in enumerate(stream) if (alarm := detector.update(x))]


def docstring_stream() -> list[float]:
    """The example stream of the river.drift ADWIN, PageHinkley and KSWIN docstrings."""
    rng = random.Random(12345)
    return [float(x) for x in rng.choices([0, 1], k=1000) + rng.choices(range(4, 8), k=1000)]


@pytest.mark.parametrize(
    ("name", "params", "index"),
    [
        ("ADWIN", {}, 1023),
        ("PageHinkley", {}, 1006),
        ("KSWIN", {"alpha": 0.0001, "seed": 42}, 1016),
    ],
)
def test_river_docstring_results_are_reproduced(
    name: DetectorName, params: dict[str, object], index: int
) -> None:
    detector = ConceptDriftDetector(name, params=params)
    assert alarms(detector, docstring_stream()) == [(index, True)]


@functools.cache
def agrawal_errors(
    seed: int, *, functions: tuple[int, int], drift_at: int, total: int
) -> tuple[int, ...]:
    """0/1 errors of StandardScaler|LogisticRegression predicting then learning on Agrawal,
    switching abruptly from one classification function to the other at ``drift_at``."""
    before = synth.Agrawal(classification_function=functions[0], seed=seed)
    after = synth.Agrawal(classification_function=functions[1], seed=seed + 1000)
    stream = itertools.chain(before.take(drift_at), after.take(total - drift_at))
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    errors = []
    for x, y in stream:
        errors.append(int(model.predict_one(x) != y))
        model.learn_one(x, y)
    return tuple(errors)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("name", ["ADWIN", "PageHinkley"])
def test_abrupt_concept_drift_is_caught_within_the_bound(name: DetectorName, seed: int) -> None:
    errors = agrawal_errors(seed, functions=(0, 2), drift_at=DRIFT_AT, total=2 * DRIFT_AT)
    assert np.mean(errors[DRIFT_AT : DRIFT_AT + 1000]) > np.mean(errors[DRIFT_AT - 1000 : DRIFT_AT])
    rises = [i for i, rising in alarms(ConceptDriftDetector(name), list(errors)) if rising]
    assert [i for i in rises if i < DRIFT_AT] == []
    after = [i for i in rises if i >= DRIFT_AT]
    assert after, "the drift was missed"
    assert after[0] - DRIFT_AT <= MAX_DELAY


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_stream_without_drift_raises_no_rising_alarm(seed: int) -> None:
    errors = agrawal_errors(seed, functions=(0, 0), drift_at=0, total=20_000)
    found = alarms(ConceptDriftDetector("ADWIN"), list(errors))
    assert [i for i, rising in found if rising] == []


@pytest.mark.parametrize("name", ["ADWIN", "PageHinkley", "KSWIN", "DDM"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_error_falls_never_alarm(name: DetectorName, seed: int) -> None:
    rng = random.Random(seed)
    stream = [float(rng.random() < 0.6) for _ in range(2000)]
    stream += [float(rng.random() < 0.1) for _ in range(2000)]
    params = {"seed": seed} if name == "KSWIN" else {}
    detector = ConceptDriftDetector(name, params=params)
    rises = [i for i, rising in alarms(detector, stream) if rising]
    assert [i for i in rises if i >= 2000] == []
    if name != "KSWIN":  # KSWIN also false-alarms on stationary 0/1 errors, either way
        assert rises == []


def test_falls_are_seen_but_not_acted_on_and_rises_are() -> None:
    rng = random.Random(7)
    falling = [abs(rng.gauss(0, 2.0)) for _ in range(3000)] + [
        abs(rng.gauss(0, 0.5)) for _ in range(3000)
    ]
    detector = ConceptDriftDetector("ADWIN")
    found = alarms(detector, falling)
    assert found and not any(rising for _, rising in found)
    assert detector.falls == len(found)
    rising_stream = [abs(rng.gauss(0, 0.5)) for _ in range(3000)] + [
        abs(rng.gauss(0, 2.0)) for _ in range(3000)
    ]
    found = alarms(ConceptDriftDetector("ADWIN"), rising_stream)
    assert any(rising and i >= 3000 for i, rising in found)


def test_an_alarm_reports_the_error_levels_and_rebases() -> None:
    detector = ConceptDriftDetector("ADWIN")
    stream = docstring_stream()
    alarm = next(a for x in stream if (a := detector.update(x)))
    assert alarm.error_before == pytest.approx(0.5, abs=0.05)
    assert alarm.error_after > 4
    assert alarm.samples == 1024
    assert detector.rises == 1


def test_bad_detector_options_are_refused() -> None:
    with pytest.raises(ConfigError):
        ConceptDriftDetector("PageHinkley", params={"mode": "both"})
    with pytest.raises(ConfigError):
        ConceptDriftDetector("CUSUM")  # type: ignore[arg-type]
    with pytest.raises(InvalidEventError):
        ConceptDriftDetector("DDM").update(0.5)


# --- data drift ----------------------------------------------------------------------------


def test_ks_statistic_matches_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=700), rng.normal(0.3, 1.2, size=500)
    assert ks_statistic(a, b) == pytest.approx(stats.ks_2samp(a, b).statistic)
    assert ks_statistic([1, 1, 2], [1, 2, 2]) == pytest.approx(
        stats.ks_2samp([1, 1, 2], [1, 2, 2]).statistic
    )


def test_psi_of_equal_and_shifted_bins() -> None:
    assert psi(np.array([10.0, 20, 30]), np.array([1.0, 2, 3])) == pytest.approx(0.0)
    assert psi(np.array([50.0, 50]), np.array([90.0, 10])) > 0.2
    assert np.isfinite(psi(np.array([100.0, 0]), np.array([0.0, 100])))


def run_monitor(
    monitor: DataDriftMonitor, rows: list[dict[str, object]]
) -> list[tuple[int, str, str]]:
    return [(i, a.feature, a.detector) for i, row in enumerate(rows) for a in monitor.update(row)]


def rows(
    rng: np.random.Generator,
    n: int,
    *,
    shift: float = 0.0,
    colors: tuple[float, ...] = (0.6, 0.3, 0.1),
) -> list[dict[str, object]]:
    xs = rng.normal(shift, 1.0, size=n)
    cs = rng.choice(["red", "green", "blue"], p=colors, size=n)
    return [
        {"x": float(x), "color": str(c), "flag": bool(x > 0)} for x, c in zip(xs, cs, strict=True)
    ]


def test_same_distribution_scores_near_zero_and_never_alarms() -> None:
    rng = np.random.default_rng(1)
    monitor = DataDriftMonitor(DataDriftOptions(reference_size=1000, window_size=1000, every=250))
    assert run_monitor(monitor, rows(rng, 6000)) == []
    scores = monitor.scores
    assert scores["x"]["PSI"] < 0.05 and scores["x"]["KS"] < 0.1
    assert scores["color"]["PSI"] < 0.05 and "KS" not in scores["color"]
    assert scores["flag"]["PSI"] < 0.05


def test_shifted_features_alarm_once_per_crossing() -> None:
    rng = np.random.default_rng(2)
    monitor = DataDriftMonitor(DataDriftOptions(reference_size=1000, window_size=1000, every=250))
    stream = rows(rng, 2000) + rows(rng, 3000, shift=1.0, colors=(0.1, 0.3, 0.6))
    found = run_monitor(monitor, stream)
    assert {(feature, detector) for _, feature, detector in found} == {
        ("x", "PSI"),
        ("x", "KS"),
        ("color", "PSI"),
        ("flag", "PSI"),
    }
    assert len(found) == 4  # edge-triggered: one alarm each while the shift lasts
    assert all(i >= 2000 for i, _, _ in found)
    assert monitor.scores["x"]["PSI"] > 0.2 and monitor.scores["x"]["KS"] > 0.2


def test_explicit_reference_missing_values_and_new_categories() -> None:
    monitor = DataDriftMonitor(DataDriftOptions(window_size=100, every=100))
    monitor.set_reference([{"x": float(i % 10), "c": "a"} for i in range(500)])
    assert monitor.has_reference
    same = [{"x": float(i % 10), "c": "a"} for i in range(100)]
    assert monitor.update(same[0]) == [] and all(monitor.update(r) == [] for r in same[1:-1])
    found = {(a.feature, a.detector) for a in monitor.update({"c": "zzz"})}
    assert found == set()  # one odd row in a hundred is no drift
    odd = [{"x": None, "c": "zzz"} for _ in range(100)]
    found = {(a.feature, a.detector) for r in odd for a in monitor.update(r)}
    assert found == {("x", "PSI"), ("c", "PSI")}  # all missing: no KS without numbers


def test_the_batched_evaluation_equals_the_definitions_on_messy_windows() -> None:
    """The monitor sorts all numeric columns at once and searches them; its PSI and KS
    must be those of :func:`psi` over the reference's bins and :func:`ks_statistic`, on
    windows holding ties, None, NaN, inf, strings and bools in numeric features."""
    rng = random.Random(7)
    odd: list[object] = [None, float("nan"), float("inf"), "x", True]

    def row(shift: float, *, messy: bool = True) -> dict[str, object]:
        return {"ties": float(rng.randint(0, 4)) + shift, "gauss": rng.gauss(shift, 1.0),
                "messy": rng.choice(odd) if messy and rng.random() < 0.2 else rng.gauss(0.0, 1.0 + shift),
                "color": rng.choice("rgb")}

    monitor = DataDriftMonitor(DataDriftOptions(reference_size=300, window_size=200, every=50))
    monitor.set_reference([row(0.0, messy=False) for _ in range(300)])  # "messy" is numeric
    assert monitor._reference is not None and monitor._reference["messy"].numeric
    checked = 0
    for i in range(1000):
        monitor.update(row(0.5 if i > 400 else 0.0))
        if monitor._filled < 200 or monitor._since_reference % 50:
            continue
        for name, ref in monitor._reference.items():
            values = (list(monitor._block[monitor._numeric.index(name)]) if ref.numeric
                      else monitor._columns[name])
            want_psi = psi(ref.counts, ref.bin_counts(values), epsilon=monitor.options.epsilon)
            assert monitor.scores[name]["PSI"] == want_psi, name
            if ref.numeric:
                numbers = [v for v in values if isinstance(v, float) and np.isfinite(v)]
                assert monitor.scores[name]["KS"] == ks_statistic(ref.values, numbers), name
        checked += 1
    assert checked == 17 and monitor.scores["ties"]["KS"] > 0.2


def test_evaluations_wait_min_seconds_of_stream_time() -> None:
    """At 1,000 events a second an evaluation every 200 events would run five times a
    second; with the label times given it runs at the first multiple of ``every`` at least
    ``min_seconds`` after the last one; without them (or at 0) at every multiple."""
    rng = random.Random(3)
    rows = [{"x": rng.gauss(0.0, 1.0)} for _ in range(6_000)]

    def evaluated_at(min_seconds: float, timed: bool) -> list[int]:
        monitor = DataDriftMonitor(DataDriftOptions(reference_size=1000, window_size=1000, every=200,
                                                    min_seconds=min_seconds))
        at: list[int] = []
        evaluate = monitor._evaluate

        def counted() -> list[DataAlarm]:
            at.append(monitor.samples - 1)  # the index of the event being added
            return evaluate()

        monitor._evaluate = counted  # type: ignore[method-assign]
        for i, row in enumerate(rows):
            monitor.update(row, seconds=i / 1000 if timed else None)
        return at

    every_multiple = list(range(1999, 6000, 200))  # the window is full after 2,000 events
    assert evaluated_at(1.0, timed=False) == evaluated_at(0.0, timed=True) == every_multiple
    assert evaluated_at(1.0, timed=True) == [1999, 2999, 3999, 4999, 5999]
    assert evaluated_at(0.5, timed=True) == list(range(1999, 6000, 600))
