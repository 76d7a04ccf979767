"""Fast recovery after a concept-drift alarm, offline: the monitor's core and the
retrainer's core and judgement on a stream, without Kafka (issue 17, "Fast recovery").

``python -m bench.recovery [--seeds 1 2 3 4 5] [--streams card sine] [--modes ...]``

Per stream and seed: a logreg champion trained before the change serves every event
(predict at feature time); each label makes a FeedbackEvent dict that goes to
:class:`~riverops.roles.monitor.core.MonitorCore` (rolling metrics, the concept alarms)
and to :class:`~riverops.roles.retrainer.triggers.RetrainerCore` (window, triggers,
waiting); a request that is ready is judged by
:func:`~riverops.roles.retrainer.recovery.judge`, the role's own code, and a promoted
candidate serves from the next event on. Recovery is measured as the demo measures it
(:func:`riverops.demo.summary.recovery_of`): labelled events from the change until a newer
champion's count window (1,000 of its own outcomes) is within 0.02 of the pre-change ROC
AUC (card) or accuracy (SINE), and until that champion began serving (the window's
start: the recovery as the stream saw it).

Left out against the real loop: the request's round trip through the retrain topic, the
scorer's hot swap and the monitor's emit interval (tens to hundreds of events at the
demo's rate), the registry and the probation (no rollbacks here). Card labels come with
the stream's own delays (minutes of simulated time, a few events here; chargebacks 1-30
days later, past the end).

Modes: ``legacy`` (``recovery_samples=None``: wait for ``drift_min_samples``, the retrain
before this work), ``warm``, ``scratch``, ``both`` (``recovery_start``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from river.datasets import synth

from riverops.demo.cardgen import CardStream, merged_events
from riverops.demo.summary import recovery_of
from riverops.models.batch import learn_in_order
from riverops.models.specs import get_spec
from riverops.roles.monitor.core import MonitorCore
from riverops.roles.retrainer.frame import feedback_frame
from riverops.roles.retrainer.recovery import judge
from riverops.roles.retrainer.triggers import RetrainerCore
from riverops.sections import PolicySettings, RetrainerSettings

__all__ = ["Run", "run", "main", "card_settings", "sine_settings"]

T0 = datetime(2026, 1, 1, tzinfo=UTC)
RATE = 1000.0  # events per second of event time, as the demo offers them
DAY_EVENTS = 6_000


def card_settings(**recovery: Any) -> RetrainerSettings:
    """The demo's retrainer settings (``riverops.demo.run.demo_settings``)."""
    return RetrainerSettings(window_events=DAY_EVENTS + DAY_EVENTS // 3, drift_min_samples=DAY_EVENTS,
                             cooldown_seconds=8.0, degradation_below=None, min_error_rise=0.0,
                             **recovery)


def sine_settings(**recovery: Any) -> RetrainerSettings:
    """tests/integration/test_drift_recovery.py's retrainer settings."""
    return RetrainerSettings(window_events=5_000, drift_min_samples=2_500, cooldown_seconds=5.0,
                             policy=PolicySettings(metric="accuracy", margin=0.02, min_samples=300),
                             **recovery)


def _mode(mode: str) -> dict[str, Any]:
    """``legacy``, or ``START[:PASSES[:SAMPLES]]`` (the recovery settings)."""
    if mode == "legacy":
        return {"recovery_samples": None}
    start, *rest = mode.split(":")
    out: dict[str, Any] = {"recovery_start": start}
    if rest:
        out["recovery_passes"] = int(rest[0])
    if len(rest) > 1:
        out["recovery_samples"] = int(rest[1])
    return out


Event = tuple[str, dict[str, Any]]


def _card(seed: int) -> tuple[Any, Iterator[Event], int, int]:
    champion = get_spec("logreg").build(seed=seed)
    warm = list(CardStream(events=20_000, seed=seed + 1000, id_prefix="warm"))
    learn_in_order(champion, [tx.features for tx in warm], [tx.label for tx in warm])
    change, end = 24_000, 34_000
    stream = CardStream(events=end, drift_at=change, seed=seed, events_per_second=RATE, start=T0)
    return champion, merged_events(stream, late_labels=False), change, 14_000


def _sine(seed: int) -> tuple[Any, Iterator[Event], int, int]:
    champion = get_spec("logreg").build(seed=1)
    rows = list(synth.Sine(classification_function=0, seed=seed + 100).take(4_000))
    learn_in_order(champion, [{str(k): float(v) for k, v in x.items()} for x, _ in rows],
                   [bool(y) for _, y in rows])
    change, end = 3_000, 12_000
    data = (list(synth.Sine(classification_function=0, seed=seed + 200).take(change))
            + list(synth.Sine(classification_function=1, seed=seed + 300).take(end - change)))

    def events() -> Iterator[Event]:
        for i, (x, y) in enumerate(data):
            at = T0 + timedelta(seconds=i / RATE)
            yield "features", {"event_id": f"s{i:06d}", "model": "fraud", "entity_id": f"e{i % 50}",
                               "event_time": at, "features": {str(k): float(v) for k, v in x.items()}}
            yield "label", {"event_id": f"s{i:06d}", "model": "fraud", "label": bool(y),
                            "label_time": at + timedelta(microseconds=500)}
    return champion, events(), change, 0


@dataclass
class Run:
    stream: str
    seed: int
    mode: str
    recovered_after: int | None  # labelled events from the change to recovery (its window complete)
    serving_from: int | None  # ... to the first outcome of the champion that recovered
    level: float | None
    value: float | None
    first_alarm: int | None  # labelled events from the change to the first acted-on alarm
    promoted_at: list[int]  # labelled events from the change to each promotion
    decisions: list[str]
    seconds: float


def run(stream: str, seed: int, mode: str) -> Run:
    """One stream, seed and mode (see the module docstring)."""
    began = time.monotonic()
    champion, events, change, start = (_card if stream == "card" else _sine)(seed)
    settings = (card_settings if stream == "card" else sine_settings)(**_mode(mode))
    metric = "roc_auc" if stream == "card" else "accuracy"
    monitor = MonitorCore(window_size=1000, data_drift=None)
    core = RetrainerCore(settings)
    version, served = 1, {}
    metrics: list[dict[str, Any]] = []
    index = 0  # feature events so far
    labelled = labelled_at_change = 0
    change_time: datetime | None = None
    first_alarm: int | None = None
    promoted: list[int] = []
    decisions: list[str] = []
    for kind, record in events:
        if kind == "features":
            if index == change:
                change_time, labelled_at_change = record["event_time"], labelled
            if index >= start:
                p = champion.predict_proba_one(record["features"]).get(True, 0.0)
                served[record["event_id"]] = (record, version, p)
            index += 1
            continue
        made = served.pop(record["event_id"], None)
        if made is None:
            continue
        features, ver, p = made
        labelled += 1
        feedback = {**features, "label": record["label"], "label_time": record["label_time"],
                    "predictions": [{"version": ver, "variant": "champion", "prediction": p >= 0.5,
                                     "scores": {"True": p, "False": 1 - p}}]}
        now = record["label_time"]
        seconds = (now - T0).total_seconds()
        core.add_feedback(feedback, ("feedback", 0, labelled))
        for alarm in monitor.update([feedback]):
            trigger = core.on_drift(alarm, now=seconds)
            if trigger is not None:
                if change_time is not None and first_alarm is None:
                    first_alarm = labelled - labelled_at_change
                core.on_request({"request_id": f"r{labelled}", "model": trigger.model,
                                 "params": trigger.params}, ends={}, now=seconds)
        if labelled % 50:
            continue
        metrics.extend(e for e in monitor.metrics_events(now) if e["window_kind"] == "count")
        for request in core.ready(now=seconds, at_end=lambda _: True):
            window, limit = core.training_window(request)
            frame = feedback_frame([r for r, _ in window], sources=[s for _, s in window],
                                   window_seconds=limit)
            judged = judge(core, request, frame, spec_name="logreg", champion=champion)
            after = labelled - labelled_at_change if change_time is not None else -1
            what = judged.decision.action + (f", again at {judged.retry}" if judged.retry else "")
            decisions.append(f"@{after} stage {judged.stage}: {what} ({judged.learned}): {judged.decision.reason}")
            if judged.register and judged.decision.action == "promote" and judged.result is not None:
                champion, version = judged.result.model, version + 1
                promoted.append(after)
    back = recovery_of(metrics, change_time, metric=metric) if change_time else None
    return Run(stream, seed, mode, back.events if back else None, back.serving_from if back else None,
               back.level if back else None,
               back.value if back else None, first_alarm, promoted, decisions,
               time.monotonic() - began)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--streams", nargs="+", default=["card", "sine"], choices=["card", "sine"])
    parser.add_argument("--modes", nargs="+", default=["legacy", "warm", "scratch", "both"],
                        help="legacy, or START[:PASSES[:SAMPLES]] with START warm, scratch or both (warm:8:300)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every decision")
    args = parser.parse_args(argv)
    for stream in args.streams:
        for mode in args.modes:
            runs = [run(stream, seed, mode) for seed in args.seeds]
            for r in runs:
                print(f"{stream} {mode} seed {r.seed}: recovered after {r.recovered_after} "
                      f"(serving from {r.serving_from}) "
                      f"(level {r.level and round(r.level, 4)} -> {r.value and round(r.value, 4)}), "
                      f"first alarm acted on {r.first_alarm}, promotions at {r.promoted_at} "
                      f"({r.seconds:.0f} s)")
                if args.verbose:
                    for line in r.decisions:
                        print("    " + line)
            done = [r.recovered_after for r in runs if r.recovered_after is not None]
            median = statistics.median(done) if len(done) == len(runs) else None
            serving = [r.serving_from for r in runs if r.serving_from is not None]
            served = statistics.median(serving) if len(serving) == len(runs) else None
            print(f"== {stream} {mode}: median {median} over seeds {args.seeds} "
                  f"({len(done)}/{len(runs)} recovered): {[r.recovered_after for r in runs]}; "
                  f"serving from: median {served}, {[r.serving_from for r in runs]}")


if __name__ == "__main__":
    main()
