"""``riverops status``: the scorer's estimates before labels, beside the realised figures.

The estimates live where the scores are made, in the scorer (``riverops_estimated_metric``
on its /metrics: :mod:`riverops.roles.estimates`), so the status view scrapes them there
rather than have the scorer write to the metrics topic (a second writer there would need a
new ACL and confuse every reader that takes the monitor's events as the only ones). Several
scorer replicas each estimate over their own partitions: their values are averaged,
weighted by the scores each holds. The calibration check needs labels, so it is made here
on the feedback topic's tail (each prediction's score against its label): a backtest
(:func:`riverops.models.estimate.backtest`: the estimate made from the tail's own scores
against what its labels give, and its ECE) judges the estimate
(:func:`~riverops.models.estimate.judge`). The same tail recalibrates the estimate: the
positive rate of each score bin over it, applied to the histogram of the scorer's window
(:mod:`riverops.models.recalibrate`), gives the ``recal.`` columns, which hold where P(y |
score) is what it was over the tail (covariate shift, not concept drift). Those labels are
older than the scores of the estimate; a calibration that held then may not hold on the
new scores, so a row says ``scores moved`` when the accuracy expected from the tail's scores is more than
``MOVED`` away from the scorer's estimate (covariate shift: what the estimate is for, but
the check was made on other scores).

Examples
--------
>>> text = '''riverops_estimated_metric{metric="roc_auc",model="m",role="scorer",variant="champion",version="1"} 0.9
... riverops_estimated_samples{model="m",role="scorer",variant="champion",version="1"} 400.0
... '''
>>> parse_estimates(text)
{('m', 1, 'champion'): Page(samples=400, values={'roc_auc': 0.9}, bins=None)}
"""

from __future__ import annotations

import urllib.request
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from prometheus_client.parser import text_string_to_metric_families
from rich.table import Table

from riverops.models.estimate import MAX_ECE, MIN_LABELLED, Backtest, backtest, judge
from riverops.models.labels import coerce_label, positive_score
from riverops.models.recalibrate import BINS, bin_rates, expected_from_bins
from riverops.schemas.errors import InvalidEventError

__all__ = [
    "parse_estimates", "scrape_estimates", "combine", "calibration", "estimate_rows",
    "estimates_table", "Page", "Tail", "MOVED",
]

Key = tuple[str, int, str]
"""model, version, variant"""


class Page(NamedTuple):
    """One key's estimate on a scorer's /metrics."""

    samples: int
    """scores in the scorer's window"""
    values: dict[str, float]
    """estimated metric -> value"""
    bins: tuple[int, ...] | None = None
    """the window's scores per logit bin (None: not exported)"""


class Tail(NamedTuple):
    """One key's labelled outcomes on the feedback's tail, as the status judges with them."""

    check: Backtest
    rates: npt.NDArray[np.float64]
    """positive rate per score bin (:func:`riverops.models.recalibrate.bin_rates`)"""


Scraped = dict[Key, Page]

MOVED = 0.03
"""Expected accuracy of the labelled tail's scores this far from the estimate: the scores moved."""


def parse_estimates(text: str) -> Scraped:
    """The estimates in one /metrics page (Prometheus text format)."""
    samples: dict[Key, int] = {}
    values: dict[Key, dict[str, float]] = defaultdict(dict)
    bins: dict[Key, list[int]] = defaultdict(lambda: [0] * BINS)
    for family in text_string_to_metric_families(text):
        if family.name not in ("riverops_estimated_metric", "riverops_estimated_samples",
                               "riverops_estimated_scores"):
            continue
        for sample in family.samples:
            labels = sample.labels
            key = (labels["model"], int(labels["version"]), labels["variant"])
            if family.name == "riverops_estimated_samples":
                samples[key] = int(sample.value)
            elif family.name == "riverops_estimated_scores":
                bins[key][int(labels["bin"])] = int(sample.value)
            else:
                values[key][labels["metric"]] = float(sample.value)
    return {key: Page(n, dict(values.get(key, {})), tuple(bins[key]) if key in bins else None)
            for key, n in samples.items()}


def scrape_estimates(urls: Sequence[str], *, timeout: float = 2.0) -> tuple[list[Scraped], list[str]]:
    """Each scorer's estimates, and what went wrong with the pages that could not be read."""
    scraped, errors = [], []
    for url in urls:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (operator's URL)
                scraped.append(parse_estimates(response.read().decode()))
        except (OSError, ValueError) as exc:
            errors.append(f"{url}: {exc}")
    return scraped, errors


def combine(pages: Iterable[Scraped]) -> Scraped:
    """One estimate per key from several scorers: their mean weighted by their scores, the
    sum of their bins (None if one has none).

    >>> combine([{("m", 1, "champion"): Page(100, {"accuracy": 0.9}, (60, 40))},
    ...          {("m", 1, "champion"): Page(300, {"accuracy": 0.7}, (100, 200))}])
    {('m', 1, 'champion'): Page(samples=400, values={'accuracy': 0.75}, bins=(160, 240))}
    """
    total: dict[Key, int] = defaultdict(int)
    sums: dict[Key, dict[str, list[float]]] = defaultdict(lambda: defaultdict(lambda: [0.0, 0.0]))
    bins: dict[Key, npt.NDArray[np.int64] | None] = {}
    for page in pages:
        for key, (n, values, counts) in page.items():
            total[key] += n
            for name, value in values.items():
                weighted = sums[key][name]
                weighted[0] += n * value
                weighted[1] += n
            before = bins.get(key, np.zeros(len(counts), dtype=np.int64) if counts else None)
            bins[key] = before + np.asarray(counts) if before is not None and counts else None
    return {key: Page(n, {name: s / w for name, (s, w) in sums[key].items() if w},
                      None if (b := bins.get(key)) is None else tuple(int(c) for c in b))
            for key, n in total.items()}


def calibration(feedback: Iterable[Mapping[str, Any]]) -> dict[Key, Tail]:
    """Per key, the backtest and score-bin rates of the binary predictions in FeedbackEvent dicts
    (records with a label that is not binary, or scores without P(True), are skipped)."""
    pairs: dict[Key, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    for record in feedback:
        try:
            label = coerce_label("binary", record.get("label"))
        except InvalidEventError:
            continue
        for made in record.get("predictions") or ():
            p = positive_score(made.get("scores") or {})
            if p is None:
                continue
            scores, labels = pairs[(record["model"], int(made["version"]), made["variant"])]
            scores.append(p)
            labels.append(float(label))
    return {key: Tail(backtest(np.array(p), np.array(y)), bin_rates(p, y))
            for key, (p, y) in pairs.items()}


def estimate_rows(estimates: Scraped, realised: Iterable[Mapping[str, Any]],
                  tails: Mapping[Key, Tail], *,
                  max_ece: float = MAX_ECE) -> list[dict[str, Any]]:
    """The rows of the status view: each estimate, the realised count-window figures of
    the same key (MetricsEvent dicts), its calibration, the trust it earns and the
    estimate recalibrated on the labelled tail (when the scorer exported its bins and the
    tail has enough outcomes)."""
    latest = {(e["model"], int(e["version"]), e["variant"]): e["metrics"]
              for e in realised if e["window_kind"] == "count"}
    rows = []
    for key, (samples, values, bins) in sorted(estimates.items()):
        tail = tails.get(key)
        check = tail.check if tail is not None else None
        recalibrated: dict[str, float] = {}
        if (values and tail is not None and bins is not None  # values: enough scores
                and tail.check.samples >= MIN_LABELLED):
            accuracy, auc = expected_from_bins(bins, tail.rates)
            recalibrated = {k: v for k, v in (("accuracy", accuracy), ("roc_auc", auc))
                            if np.isfinite(v)}
        # the scorer exports no value below its minimum: too few scores
        trust = judge(samples, check, min_samples=1, max_ece=max_ece) if values else "too_few"
        known = check is not None and check.samples >= MIN_LABELLED
        moved = (check is not None and known and "accuracy" in values
                 and abs(values["accuracy"] - check.expected["accuracy"]) > MOVED)
        rows.append({
            "model": key[0], "version": key[1], "variant": key[2], "samples": samples,
            "estimated": values, "recalibrated": recalibrated,
            "realised": {k: v for k, v in latest.get(key, {}).items() if k in ("accuracy", "roc_auc")},
            "calibration_samples": check.samples if check else 0,
            "ece": check.ece if check is not None and known else None,
            "miss": check.miss() if check is not None and known else None,
            "trust": trust,
            "note": "scores moved since the labelled tail" if moved else "",
        })
    return rows


def estimates_table(rows: Sequence[Mapping[str, Any]], errors: Sequence[str],
                    sources: Sequence[str] = ()) -> Table:
    """The rows as a Rich table; unreadable scorer pages go in its caption, and the pages
    read when none had an estimate."""
    said = list(errors)
    if not rows and sources:
        said.append(f"no estimate on {', '.join(sources)}")
    table = Table(title="performance before labels (estimated from the scores; realised: "
                  "count window)", title_justify="left",
                  caption="; ".join(said) if said else None, caption_justify="left")
    for column in ("model", "version", "variant", "scores", "accuracy est.", "recal.", "realised",
                   "roc_auc est.", "recal.", "realised", "ECE", "tail miss", "trust", "note"):
        table.add_column(column)

    def shown(values: Mapping[str, float], name: str) -> str:
        return f"{values[name]:.4f}" if name in values else ""

    for row in rows:
        estimated, realised, recal = row["estimated"], row["realised"], row.get("recalibrated", {})
        colour = {"calibrated": "green", "uncalibrated": "red"}.get(row["trust"], "yellow")
        table.add_row(row["model"], str(row["version"]), row["variant"], str(row["samples"]),
                      shown(estimated, "accuracy"), shown(recal, "accuracy"),
                      shown(realised, "accuracy"), shown(estimated, "roc_auc"),
                      shown(recal, "roc_auc"), shown(realised, "roc_auc"),
                      "" if row["ece"] is None else f"{row['ece']:.4f}",
                      "" if row["miss"] is None else f"{row['miss']:+.4f}",
                      f"[{colour}]{row['trust']}[/]", row["note"])
    return table
