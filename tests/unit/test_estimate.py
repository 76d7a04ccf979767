"""Performance before labels (issue 17): the confidence-based estimate against the truth.

Synthetic streams where the truth is known: scores p ~ Beta(a, b), labels y ~ Bernoulli(p),
calibrated by construction (or Bernoulli(p^3), not calibrated). Then a real River logreg
on a real stream, through the scorer's core.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from river import datasets
from scipy.stats import rankdata

from riverops.demo.cardgen import CardStream
from riverops.models.batch import learn_in_order, predict_proba_batch
from riverops.models.estimate import (
    ScoreWindow,
    backtest,
    calibration_error,
    expected_accuracy,
    expected_roc_auc,
    judge,
    positive_scores,
)
from riverops.models.recalibrate import bin_rates, expected_from_bins, score_bins
from riverops.models.specs import get_spec
from riverops.roles.estimates import ScoreTap
from riverops.roles.scorer import ScorerCore, ScorerRole, ServingModel
from riverops.schemas.events import Artifact, ModelVersion
from riverops.settings import Settings
from riverops.telemetry import Telemetry

T0 = datetime(2026, 1, 1, tzinfo=UTC)
BOUND = 0.03  # issue 17's Must show: the estimate within 0.03 of the realised figure
KEY = ("m", 1, "champion")


def _auc(p: np.ndarray, y: np.ndarray) -> float:
    """Realised ROC AUC (Mann-Whitney, ties half)."""
    ranks = rankdata(p)
    positives = y.sum()
    negatives = y.size - positives
    return float((ranks[y == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def _accuracy(p: np.ndarray, y: np.ndarray) -> float:
    return float(((p >= 0.5) == (y == 1)).mean())


def _fed(p: np.ndarray, *, size: int, batch: int = 250) -> ScoreWindow[tuple[str, int, str]]:
    window: ScoreWindow[tuple[str, int, str]] = ScoreWindow(size=size)
    for start in range(0, p.size, batch):
        window.update(KEY, p[start:start + batch])
    return window


def test_expected_roc_auc_is_the_ratio_of_expected_pairs_with_ties() -> None:
    rng = np.random.default_rng(3)
    p = np.round(rng.beta(2, 3, size=120), 1)  # many ties
    concordant = pairs = 0.0
    for i in range(p.size):
        for j in range(p.size):
            if i != j:
                weight = p[i] * (1 - p[j])
                pairs += weight
                concordant += weight * (1.0 if p[i] > p[j] else 0.5 if p[i] == p[j] else 0.0)
    assert expected_roc_auc(p) == pytest.approx(concordant / pairs, abs=1e-12)
    assert math.isnan(expected_roc_auc(np.ones(10)))  # every event certain: no expected pair
    assert math.isnan(expected_roc_auc([0.3]))
    assert math.isnan(expected_accuracy([]))


def test_the_window_holds_the_last_scores_of_each_key() -> None:
    rng = np.random.default_rng(0)
    window: ScoreWindow[str] = ScoreWindow(size=100, min_samples=10)
    seen: list[float] = []
    for n in (7, 50, 93, 1, 240, 13):  # wraps, and one batch larger than the window
        batch = rng.random(n)
        window.update("a", batch)
        seen.extend(batch)
        assert sorted(window.scores("a")) == sorted(seen[-100:])
    window.update("b", [0.2, math.nan, 0.9])  # a NaN score is left out
    assert window.estimate("b").samples == 2 and window.estimate("b").trust == "too_few"
    window.retain(["a"])
    assert window.keys() == ["a"] and window.estimate("b").samples == 0
    with pytest.raises(ValueError):
        ScoreWindow(size=0)


@pytest.mark.parametrize(("a", "b"), [(2.0, 5.0), (1.0, 1.0), (0.5, 0.5), (5.0, 2.0)])
def test_on_a_stationary_calibrated_stream_the_estimate_tracks_the_realised_figures(
        a: float, b: float) -> None:
    worst = {"accuracy": 0.0, "roc_auc": 0.0}
    for seed in range(5):
        rng = np.random.default_rng(seed)
        p = rng.beta(a, b, size=5000)
        y = (rng.random(p.size) < p).astype(np.float64)
        estimate = _fed(p, size=5000).estimate(KEY, check=backtest(p, y))
        worst["accuracy"] = max(worst["accuracy"], abs(estimate.accuracy - _accuracy(p, y)))
        worst["roc_auc"] = max(worst["roc_auc"], abs(estimate.roc_auc - _auc(p, y)))
        assert estimate.trust == "calibrated"
    print(f"Beta({a:g}, {b:g}), 5 seeds x 5000 events: largest |estimate - realised| "
          f"accuracy {worst['accuracy']:.4f}, ROC AUC {worst['roc_auc']:.4f} (bound {BOUND})")
    assert worst["accuracy"] <= BOUND and worst["roc_auc"] <= BOUND


def test_after_a_covariate_shift_the_estimate_moves_before_the_labels_do() -> None:
    """Scores Beta(2, 8) (confident: accuracy ~0.9), then Beta(4, 4) (unsure: ~0.65);
    labels arrive 3,000 events late. 2,000 events after the shift the estimate has moved
    and the realised figure over the labels arrived has not; once the labels of the new
    regime arrive, they land where the estimate already was."""
    rng = np.random.default_rng(11)
    before, after = rng.beta(2, 8, size=6000), rng.beta(4, 4, size=4000)
    p = np.concatenate([before, after])
    y = (rng.random(p.size) < p).astype(np.float64)
    delay, shift = 3000, before.size
    window = _fed(p[:shift], size=2000)
    level = window.estimate(KEY)
    window.update(KEY, p[shift:shift + 2000])
    moved = window.estimate(KEY)
    now = shift + 2000
    labelled = slice(now - delay - 2000, now - delay)  # the last 2,000 labels arrived: all old
    realised_now = _accuracy(p[labelled], y[labelled])
    realised_later = _accuracy(p[shift:now], y[shift:now])
    auc_later = _auc(p[shift:now], y[shift:now])
    print(f"accuracy: estimate {level.accuracy:.4f} -> {moved.accuracy:.4f} at the shift + 2000; "
          f"realised over the labels arrived then {realised_now:.4f}, over the new regime "
          f"once labelled {realised_later:.4f}; ROC AUC estimate {level.roc_auc:.4f} -> "
          f"{moved.roc_auc:.4f}, realised later {auc_later:.4f}")
    assert level.accuracy - moved.accuracy > 0.15  # the estimate moved, without a new label
    assert abs(realised_now - level.accuracy) <= BOUND  # the labels arrived have not
    assert abs(moved.accuracy - realised_later) <= BOUND  # and it moved to the right place
    assert abs(moved.roc_auc - auc_later) <= BOUND


def test_an_uncalibrated_model_is_flagged() -> None:
    rng = np.random.default_rng(5)
    p = rng.beta(2, 2, size=5000)
    y = (rng.random(p.size) < p ** 3).astype(np.float64)  # really positive far less often
    ece = calibration_error(p, y)
    estimate = _fed(p, size=5000).estimate(KEY, check=backtest(p, y))
    off = abs(estimate.accuracy - _accuracy(p, y)), abs(estimate.roc_auc - _auc(p, y))
    print(f"labels ~ Bernoulli(p^3): ECE {ece:.4f}, estimate off by {off[0]:.4f} (accuracy), "
          f"{off[1]:.4f} (ROC AUC)")
    assert estimate.trust == "uncalibrated"
    assert max(off) > BOUND  # what the flag warns of (here the ROC AUC; accuracy by chance less)
    assert judge(5000, None, min_samples=200) == "unchecked"
    assert judge(100, backtest(p, p > 0.5), min_samples=200) == "too_few"
    assert judge(5000, backtest(p[:100], y[:100]), min_samples=200) == "unchecked"  # 100 labels
    rare = rng.beta(0.5, 200, size=3000)  # calibrated, but ~8 positives: cannot vouch for it
    few = backtest(rare, rng.random(rare.size) < rare)
    assert few.positives < 30 and judge(5000, few, min_samples=200) == "unchecked"


def _record(version: int = 1) -> ModelVersion:
    return ModelVersion(model="m", version=version, stage="champion", spec="logreg", task="binary",
                        artifact=Artifact(inline=b"", sha256="0" * 64, signature="0" * 64, size=0),
                        changed_by="test", reason="test", changed_at=T0)


def test_a_river_logreg_on_phishing_through_the_scorer() -> None:
    """Learned on the first half of Phishing, scoring the second half in batches through
    :class:`ScorerCore`: the estimate it keeps against the realised figures."""
    pairs = list(datasets.Phishing())
    rows, labels = [dict(x) for x, _ in pairs], [bool(y) for _, y in pairs]
    cut = len(rows) // 2
    model = get_spec("logreg").build(seed=1, learning_rate=0.05)
    learn_in_order(model, rows[:cut], labels[:cut])
    core = ScorerCore(estimates=ScoreTap(size=len(rows), min_samples=200))
    core.set_plan("m", champion=ServingModel(_record(), model, "champion"))
    scored: list[dict[str, Any]] = []
    for start in range(cut, len(rows), 64):
        events = [{"event_id": f"e{i}", "model": "m", "entity_id": "x",
                   "event_time": T0 + timedelta(seconds=i), "features": rows[i]}
                  for i in range(start, min(start + 64, len(rows)))]
        scored.extend(core.score(events).predictions)
    p = positive_scores([prediction["scores"] for prediction in scored])
    y = np.array(labels[cut:], dtype=np.float64)
    ece = calibration_error(p, y)
    assert core.estimates.window is not None
    estimate = core.estimates.window.estimate(KEY, check=backtest(p, y))
    assert estimate.samples == len(rows) - cut
    assert core.estimates.estimate()[KEY].trust == "unchecked"  # the scorer alone has no label
    realised = {"accuracy": _accuracy(p, y), "roc_auc": _auc(p, y)}
    print(f"Phishing, logreg, {estimate.samples} events: estimate accuracy {estimate.accuracy:.4f} "
          f"ROC AUC {estimate.roc_auc:.4f}; realised {realised['accuracy']:.4f}, "
          f"{realised['roc_auc']:.4f}; ECE {ece:.4f} -> {estimate.trust}")
    assert abs(estimate.accuracy - realised["accuracy"]) <= BOUND
    assert abs(estimate.roc_auc - realised["roc_auc"]) <= BOUND
    assert estimate.trust == "calibrated"
    # a version no longer served loses its estimate
    core.set_plan("m", champion=ServingModel(_record(2), model, "champion"))
    assert core.estimates.estimate() == {}


def test_a_logreg_on_the_card_stream_is_flagged_by_the_backtest_not_the_ece() -> None:
    """The demo's champion (logreg, 20,000 warm-up transactions, ~1.5% fraud): calibrated
    within 0.01 over ten bins, yet its low scores are a few points too high, and the ROC
    AUC expected from them is far below the realised one. The backtest says so."""
    txs = list(CardStream(events=30_000, seed=42))
    rows, labels = [dict(tx.features) for tx in txs], [tx.label for tx in txs]
    model = get_spec("logreg").build(seed=42)
    learn_in_order(model, rows[:20_000], labels[:20_000])
    probas = predict_proba_batch(model, rows[20_000:])
    p = positive_scores([{str(k): v for k, v in d.items()} for d in probas])
    check = backtest(p, np.array(labels[20_000:], dtype=np.float64))
    print(f"cards, logreg: ECE {check.ece:.4f}; expected {check.expected}; realised "
          f"{check.realised}; miss beyond 2 s.e. {check.miss():.4f}")
    assert check.ece < 0.05  # the ECE alone would call it calibrated
    assert check.expected["roc_auc"] < check.realised["roc_auc"] - 0.05
    assert judge(10_000, check, min_samples=200) == "uncalibrated"
    # recalibrated on the first 5,000 labelled outcomes, the estimate of the next 5,000
    y = np.array(labels[20_000:], dtype=np.float64)
    later = backtest(p[5000:], y[5000:])
    accuracy, auc = expected_from_bins(score_bins(p[5000:]), bin_rates(p[:5000], y[:5000]))
    print(f"recalibrated on the tail: accuracy {accuracy:.4f}, ROC AUC {auc:.4f}; raw "
          f"{later.expected['roc_auc']:.4f}; realised {later.realised['accuracy']:.4f}, "
          f"{later.realised['roc_auc']:.4f}")
    assert abs(accuracy - later.realised["accuracy"]) <= BOUND
    assert abs(auc - later.realised["roc_auc"]) <= BOUND


def test_the_binned_estimate_with_the_scores_as_rates_is_the_raw_one() -> None:
    """Recalibration only changes what a bin's scores are taken to mean: fed the window's
    own mean scores as rates, it gives the raw estimate (up to ties within a bin)."""
    rng = np.random.default_rng(8)
    p = rng.beta(2, 5, size=20_000)
    accuracy, auc = expected_from_bins(score_bins(p), bin_rates(p, p))  # y = p: rates = mean p
    assert accuracy == pytest.approx(expected_accuracy(p), abs=0.002)
    assert auc == pytest.approx(expected_roc_auc(p), abs=0.003)
    assert all(math.isnan(v) for v in expected_from_bins(np.zeros(64), np.zeros(64)))


def test_positive_scores_read_any_key_spelling() -> None:
    assert positive_scores([{"1": 0.25, "0": 0.75}]).tolist() == [0.25]
    assert positive_scores([{"False": 0.75}, {"False": 0.5}]).tolist() == [0.25, 0.5]
    mixed = positive_scores([{"True": 0.5, "False": 0.5}, {"False": 1.0}, {}])
    assert mixed[:2].tolist() == [0.5, 0.0] and math.isnan(mixed[2])
    assert positive_scores([]).size == 0


def test_the_estimates_are_exported_and_stale_series_removed() -> None:
    telemetry = Telemetry(CollectorRegistry(), role="scorer")
    telemetry.export_estimates({("m", 1, "champion"): (900, {"accuracy": 0.9, "roc_auc": 0.8}),
                                ("m", 2, "shadow"): (50, {})})
    text = generate_latest(telemetry.registry).decode()
    assert ('riverops_estimated_metric{metric="roc_auc",model="m",role="scorer",'
            'variant="champion",version="1"} 0.8') in text
    assert 'riverops_estimated_samples{model="m",role="scorer",variant="shadow",version="2"} 50.0' in text
    telemetry.export_estimates({("m", 2, "shadow"): (300, {"accuracy": 0.7})})
    text = generate_latest(telemetry.registry).decode()
    assert 'version="1"' not in text and 'metric="accuracy",model="m",role="scorer",variant="shadow"' in text


def test_the_role_takes_the_tap_from_the_settings_and_exports_on_its_tick(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().scorer.estimate_window == 5000
    monkeypatch.setenv("RIVEROPS_SIGNING_KEY", "test-key")  # the role's model loader wants one
    monkeypatch.setenv("RIVEROPS_SCORER__ESTIMATE_WINDOW", "0")
    assert not ScorerRole(Settings()).core.estimates.on
    monkeypatch.setenv("RIVEROPS_SCORER__ESTIMATE_WINDOW", "300")
    monkeypatch.setenv("RIVEROPS_SCORER__ESTIMATE_MIN_SAMPLES", "250")
    tap = ScorerRole(Settings()).core.estimates
    assert tap.window is not None and (tap.window.size, tap.window.min_samples) == (300, 250)
    telemetry = Telemetry(CollectorRegistry(), role="scorer")
    served = ServingModel(_record(), None, "champion")
    tap.observe(served, [0, 1, 2], [{"True": 0.9}, {"True": 0.8}, {"True": 0.1}], failed={1: None})
    assert tap.export(telemetry, now=100.0) and not tap.export(telemetry, now=101.0)  # 5 s apart
    text = generate_latest(telemetry.registry).decode()
    assert 'riverops_estimated_samples{model="m",role="scorer",variant="champion",version="1"} 2.0' in text
    assert "riverops_estimated_metric{" not in text  # 2 scores < 250: too few to show
    tap.observe(served, list(range(300)), [{"True": 0.9}] * 300, failed={})
    assert tap.export(telemetry, now=105.0)
    text = generate_latest(telemetry.registry).decode()
    assert ('riverops_estimated_metric{metric="accuracy",model="m",role="scorer",'
            'variant="champion",version="1"} 0.9') in text
    high = int(np.argmax(score_bins([0.9])))  # the window of 300 holds the last 300: all 0.9
    assert (f'riverops_estimated_scores{{bin="{high}",model="m",role="scorer",variant="champion",'
            'version="1"} 300.0') in text
