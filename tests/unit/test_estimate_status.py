"""``riverops status`` shows the scorer's estimates before labels beside the realised figures,
judged by the calibration it measures on the feedback (no broker: the pure pieces)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
from click.testing import CliRunner
from prometheus_client import CollectorRegistry, generate_latest
from rich.console import Console

from riverops.cli.estimates import (
    Page,
    calibration,
    combine,
    estimate_rows,
    parse_estimates,
    scrape_estimates,
)
from riverops.cli.main import cli
from riverops.cli.status import render_status
from riverops.models.estimate import backtest, expected_accuracy
from riverops.models.recalibrate import score_bins
from riverops.roles.estimates import ScoreTap
from riverops.schemas.events import Variant
from riverops.telemetry import Telemetry

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class _Served:
    def __init__(self, version: int, variant: Variant) -> None:
        self.record = self
        self.model, self.version, self.variant = "m", version, variant


def _feedback(p: np.ndarray, y: np.ndarray, version: int) -> list[dict[str, Any]]:
    return [{"event_id": f"e{i}", "model": "m", "entity_id": "x", "event_time": T0, "features": {},
             "label": bool(label), "label_time": T0,
             "predictions": [{"version": version, "variant": "champion", "prediction": bool(s >= 0.5),
                              "scores": {"True": float(s), "False": 1.0 - float(s)}}]}
            for i, (s, label) in enumerate(zip(p, y, strict=True))]


def test_the_scorers_page_is_read_back_and_replicas_combined() -> None:
    rng = np.random.default_rng(1)
    pages = []
    for share in (0.3, 0.7):  # two scorer replicas, each with its own partitions' scores
        telemetry = Telemetry(CollectorRegistry(), role="scorer")
        tap = ScoreTap(size=5000, min_samples=100)
        p = rng.beta(2, 5, size=int(4000 * share))
        tap.observe(_Served(1, "champion"), list(range(p.size)), [{"True": s} for s in p], {})
        tap.export(telemetry, now=0.0)
        page = parse_estimates(generate_latest(telemetry.registry).decode())
        assert page.keys() == {("m", 1, "champion")}
        assert page[("m", 1, "champion")][0] == p.size
        pages.append(page)
    (n, values, bins), = combine(pages).values()
    assert bins is not None and sum(bins) == 4000
    first, second = pages[0][("m", 1, "champion")], pages[1][("m", 1, "champion")]
    assert n == first[0] + second[0] == 4000
    assert values["accuracy"] == (first[0] * first[1]["accuracy"]
                                  + second[0] * second[1]["accuracy"]) / n
    missing = "file:///nonexistent/metrics"  # an unreadable page is said, not raised (no network)
    scraped, errors = scrape_estimates([missing])
    assert scraped == [] and len(errors) == 1 and errors[0].startswith(f"{missing}: ")


def test_the_feedback_judges_the_estimate_calibrated_or_not() -> None:
    rng = np.random.default_rng(2)
    p1, p2 = rng.beta(2, 2, size=3000), rng.beta(2, 2, size=3000)
    feedback = (_feedback(p1, rng.random(p1.size) < p1, version=1)  # calibrated
                + _feedback(p2, rng.random(p2.size) < p2 ** 3, version=2)  # not
                + _feedback(p1[:50], p1[:50] > 0.5, version=3))  # too few labels to judge
    feedback.append({**feedback[0], "label": 2.5})  # a regression label: skipped
    checked = calibration(feedback)
    assert {k: c.check.samples for k, c in checked.items()} == {
        ("m", 1, "champion"): 3000, ("m", 2, "champion"): 3000, ("m", 3, "champion"): 50}
    expected = checked[("m", 1, "champion")].check.expected["accuracy"]  # ~0.69 for Beta(2, 2)
    estimates = {("m", v, "champion"): Page(3000, {"accuracy": 0.7, "roc_auc": 0.8}) for v in (1, 2, 3)}
    # version 2: the scores moved, and the scorer exported its window's bins
    now = rng.beta(3, 2, size=3000)
    estimates[("m", 2, "champion")] = Page(3000, {"accuracy": expected + 0.1}, tuple(score_bins(now)))
    estimates[("m", 4, "champion")] = Page(20, {})  # the scorer withholds values over too few scores
    realised = [{"model": "m", "version": 1, "variant": "champion", "window_kind": kind,
                 "metrics": {"accuracy": acc, "roc_auc": 0.81, "f1": 0.5}}
                for kind, acc in (("count", 0.71), ("time", 0.6))]
    rows = estimate_rows(estimates, realised, checked)
    trust = {row["version"]: row["trust"] for row in rows}
    assert trust == {1: "calibrated", 2: "uncalibrated", 3: "unchecked", 4: "too_few"}
    assert rows[0]["realised"] == {"accuracy": 0.71, "roc_auc": 0.81}  # the count window's
    assert rows[0]["ece"] is not None and rows[0]["ece"] < 0.05 < rows[1]["ece"]
    assert abs(expected - 0.7) < 0.03 and [row["note"] != "" for row in rows] == [
        False, True, False, False]
    # recalibrated by the tail's labels (positive at p^3): near what the new scores realise
    truth = backtest(now, rng.random(now.size) < now ** 3)
    recalibrated = rows[1]["recalibrated"]
    print(f"p^3 labels: raw estimate {expected_accuracy(now):.4f}, recalibrated "
          f"{recalibrated['accuracy']:.4f} (ROC AUC {recalibrated['roc_auc']:.4f}); realised "
          f"{truth.realised['accuracy']:.4f} ({truth.realised['roc_auc']:.4f})")
    assert abs(recalibrated["accuracy"] - truth.realised["accuracy"]) <= 0.03
    assert abs(recalibrated["roc_auc"] - truth.realised["roc_auc"]) <= 0.03
    assert abs(expected_accuracy(now) - truth.realised["accuracy"]) > 0.1  # the raw one is not
    assert [bool(row["recalibrated"]) for row in rows] == [False, True, False, False]
    console = Console(record=True, width=200)
    console.print(render_status({"lag": [], "models": [], "metrics": [], "drift_alarms": [],
                                 "estimates": rows, "estimate_errors": ["http://x/metrics: down"]}))
    text = console.export_text()
    assert "performance before labels" in text and "uncalibrated" in text
    assert "0.7000" in text and "0.7100" in text and "http://x/metrics: down" in text
    console = Console(record=True, width=200)
    console.print(render_status({"lag": [], "models": [], "metrics": [], "drift_alarms": [],
                                 "estimates": [], "estimate_sources": ["http://y/metrics"]}))
    assert "no estimate on http://y/metrics" in console.export_text()


def test_status_help_names_the_estimate_options() -> None:
    result = CliRunner().invoke(cli, ["status", "--help"])
    assert result.exit_code == 0
    assert "--scorer-metrics" in result.output and "--calibration-tail" in result.output
