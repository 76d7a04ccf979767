"""The adapters of the cores that read feedback (learner, monitor, retrainer), for the
contract suite; see ``cores.py`` and ``corecase.py``."""

from __future__ import annotations

import copy
from datetime import datetime
from typing import Any, NamedTuple

from riverops.kafka.topics import Source
from riverops.models.specs import get_spec
from riverops.roles.learner import LearnerCore, LearnMode, Snapshot, Start
from riverops.roles.monitor import DataDriftOptions, MonitorCore
from riverops.roles.retrainer.triggers import RetrainerCore, millis
from riverops.schemas.errors import InvalidEventError
from riverops.sections import RetrainerSettings

from .corecase import (
    PROBES,
    T0,
    CoreCase,
    Output,
    Sources,
    bad_event,
    events,
    feedback_of,
    rejection,
)

__all__ = ["LearnerCase", "LearnerBatchCase", "MonitorCase", "RetrainerCase", "Step"]


# -- learner -------------------------------------------------------------------------------

def _feedback_bad(source: Sources, topic: str = "feedback") -> dict[str, list[Any]]:
    """Bad FeedbackEvent dicts, each with a source of its own: (record, source) pairs."""
    def item(record: Any) -> list[Any]:
        return [(record, source(topic))]

    good = feedback_of(bad_event("bad-x"))
    return {
        "NaN feature": item(feedback_of(bad_event("bad-nan", salary=float("nan")))),
        "infinite feature": item(feedback_of(bad_event("bad-inf", loan=float("-inf")))),
        "empty event id": item({**good, "event_id": ""}),
        "label of the wrong type": item({**good, "event_id": "bad-label", "label": "maybe"}),
        "no label": item({**good, "event_id": "bad-none", "label": None}),
        "features not a map": item({**good, "event_id": "bad-map", "features": [1.0, 2.0]}),
        "not a record": item(["fraud", "bad-list"]),
    }


class LearnerCase(CoreCase):
    """:class:`LearnerCore` learning row by row (the role's mode) with a Hoeffding tree, a
    model that refuses a string where it learned numbers."""

    name = "learner"
    spec: str = "hoeffding-tree"
    mode: LearnMode = "row"
    snapshot_keeps_dedupe = False  # the role commits as of its snapshots: nothing older comes back
    not_restored = {"training_data": "a resumed learner's lineage starts at the resume; the "
                                     "version it resumed from holds the spans before"}

    def stream(self) -> list[Any]:
        return [(feedback_of(e), ("feedback", 0, i)) for i, e in enumerate(events(80))]

    def new(self) -> LearnerCore:
        return LearnerCore(self._start, every_samples=10_000, mode=self.mode)

    def _start(self, model: str) -> Start:
        if model != "fraud":
            raise InvalidEventError(f"unknown model {model!r}: no champion to learn from")
        return Start(get_spec(self.spec).build(seed=1), self.spec, parent=1, task="binary")

    def feed(self, core: LearnerCore, batch: list[Any]) -> list[Output]:
        result = core.update([r for r, _ in batch], sources=[s for _, s in batch])
        return [("learned", result.learned),
                *(rejection(r.source or ("", 0, 0), r.error) for r in result.rejected),
                ("status", core.status())]

    def source(self, item: Any) -> Source:
        return item[1]  # type: ignore[no-any-return]

    def probe(self, core: LearnerCore) -> dict[str, Output]:
        snap = copy.deepcopy(core).snapshot("fraud")  # a copy: snapshots start a new period
        return {"model": (snap.spec, snap.task, snap.parent, snap.samples, snap.total_samples,
                          snap.metrics),
                "training_data": snap.training_data,
                "answers": [snap.estimator.predict_proba_one(x) for x in PROBES]}

    def resent(self, item: Any, n: int) -> list[Any]:
        return [(copy.deepcopy(item[0]), ("feedback", 1, n))]

    def snapshot(self, core: LearnerCore) -> Snapshot:
        return core.snapshot("fraud")

    def restore(self, snapshot: Snapshot) -> LearnerCore:
        """A learner resumed from ``snapshot`` as the role resumes one (parent kept as the
        snapshot's, where the role names the registered version: no registry here)."""
        def start(model: str) -> Start:
            if model != snapshot.model:
                return self._start(model)
            return Start(copy.deepcopy(snapshot.estimator), snapshot.spec, snapshot.parent,
                         snapshot.task, snapshot.total_samples)

        return LearnerCore(start, every_samples=10_000, mode=self.mode)

    def bad(self, stream: list[Any], at: int) -> dict[str, list[Any]]:
        """The contract breaches, an unknown model and, for the tree, a string where it
        learned numbers (the model cannot learn it)."""
        source = Sources()
        good = feedback_of(bad_event("bad-x"))
        out = {**_feedback_bad(source),
               "unknown model": [({**good, "event_id": "bad-model", "model": "nope"},
                                  source("feedback"))]}
        if self.spec != "logreg":
            out["a string where the model wants a number"] = [
                (feedback_of(bad_event("bad-str", salary="high")), source("feedback"))]
        return out


class LearnerBatchCase(LearnerCase):
    """The same core in mini-batch mode with the logistic regression (not the role's mode,
    but a mode of the core). Its encoder takes a string anywhere, so that one is not bad."""

    name = "learner-batch"
    spec = "logreg"
    mode = "batch"


# -- monitor -------------------------------------------------------------------------------

class MonitorCase(CoreCase):
    """:class:`MonitorCore` with small windows and data drift sizes, so that the drifted half
    of the stream raises concept and data drift alarms; metrics events read at the
    watermark after every batch."""

    name = "monitor"

    def stream(self) -> list[Any]:
        return [(feedback_of(e), ("feedback", 0, i)) for i, e in enumerate(events(160))]

    def new(self) -> MonitorCore:
        return MonitorCore(tasks={"fraud": "binary"}, window_size=20, time_window=15.0,
                           data_drift=DataDriftOptions(reference_size=30, window_size=30, every=10))

    def feed(self, core: MonitorCore, batch: list[Any]) -> list[Output]:
        sources = {id(record): source for record, source in batch}
        refused: list[Output] = []
        drift = core.update([r for r, _ in batch], on_invalid=lambda record, error: refused.append(
            rejection(sources[id(record)], error)))
        metrics = core.metrics_events(core.watermark) if core.watermark is not None else []
        return [*(("drift", d) for d in drift), *refused, *(("metrics", m) for m in metrics)]

    def source(self, item: Any) -> Source:
        return item[1]  # type: ignore[no-any-return]

    def probe(self, core: MonitorCore) -> dict[str, Output]:
        return {"status": core.status(), "data_drift": core.data_drift_scores()}

    def bad(self, stream: list[Any], at: int) -> dict[str, list[Any]]:
        """The contract breaches, a label time that is not one and a prediction of the wrong
        type. Not here: an unknown model (the monitor measures any model: its task comes
        from the registry, else from its first label)."""
        source = Sources()
        good = feedback_of(bad_event("bad-x"))
        made = {**good["predictions"][0], "prediction": "maybe"}
        no_time = {**good, "event_id": "bad-t", "label_time": "soon"}
        wrong_prediction = {**good, "event_id": "bad-p", "predictions": [made]}
        return {**_feedback_bad(source),
                "label time not a timestamp": [(no_time, source("feedback"))],
                "prediction of the wrong type": [(wrong_prediction, source("feedback"))]}


# -- retrainer -----------------------------------------------------------------------------

class Step(NamedTuple):
    """One input of the retrainer core: a record of a topic, or a tick of its clock."""

    kind: str  # feedback, drift, request, tick
    payload: Any
    source: Source
    now: float


def _alarm(at: datetime) -> dict[str, Any]:
    return {"model": "fraud", "version": 1, "variant": "champion", "kind": "concept",
            "detector": "ADWIN", "statistic": 0.4, "threshold": 0.1, "feature": None,
            "samples": 100, "detected_at": at}


def _request(request_id: str, **params: Any) -> dict[str, Any]:
    return {"request_id": request_id, "model": "fraud", "reason": "manual", "requested_by": "t",
            "requested_at": T0, "params": params}


class RetrainerCase(CoreCase):
    """:class:`RetrainerCore` with a 25-event window: feedback, two drift alarms, the
    request the first one triggered coming back, a manual request, a schedule, ticks."""

    name = "retrainer"
    settings = RetrainerSettings(window_events=25, cooldown_seconds=5.0, drift_min_samples=10,
                                 drift_wait_seconds=30.0, schedule_seconds=20.0)

    def stream(self) -> list[Step]:
        evs, steps = events(80), []
        for i, e in enumerate(evs):
            now = i * 0.5
            steps.append(Step("feedback", feedback_of(e), ("feedback", 0, i), now))
            if i in (30, 60):
                steps.append(Step("drift", _alarm(evs[i - 5].event_time), ("drift", 0, i), now))
            if i == 31:
                request = _request("r-drift", since_ms=millis(evs[25].event_time))
                steps.append(Step("request", request, ("retrain", 0, 0), now))
            if i == 50:
                steps.append(Step("request", _request("r-manual"), ("retrain", 0, 1), now))
            if i % 4 == 3:
                steps.append(Step("tick", None, ("tick", 0, i), now))
        return steps

    def new(self) -> RetrainerCore:
        return RetrainerCore(self.settings)

    def feed(self, core: RetrainerCore, batch: list[Step]) -> list[Output]:
        out: list[Output] = []
        for step in batch:
            if step.kind == "feedback":
                core.add_feedback(step.payload, step.source)
            elif step.kind == "drift":
                trigger = core.on_drift(step.payload, now=step.now)
                out += [("trigger", trigger)] if trigger is not None else []
            elif step.kind == "request":
                core.on_request(step.payload, ends={("feedback", 0): 0}, now=step.now,
                                source=step.source)
            else:
                for request in core.ready(now=step.now, at_end=lambda ends: True):
                    window, seconds = core.training_window(request)
                    ids = [(r["event_id"], s) for r, s in window]
                    out.append(("ready", request["request_id"], ids, seconds))
                out += [("trigger", t) for t in core.on_schedule(["fraud"], now=step.now)]
        return out

    def source(self, item: Step) -> Source:
        return item.source

    def probe(self, core: RetrainerCore) -> dict[str, Output]:
        return {"waiting": [r["request_id"] for r in core.waiting], "holding": core.holding(),
                "window": [(r["event_id"], s) for r, s in core.window("fraud")]}

    def redelivered(self, item: Step) -> list[Step]:
        # a tick is time passing, not a record; a re-delivered RetrainRequest runs again: the
        # retrainer is at-least-once for requests by design (its commit stays before the oldest
        # waiting request, so a restart re-reads and re-runs the later ones too)
        return [] if item.kind in ("tick", "request") else [copy.deepcopy(item)]

    def resent(self, item: Step, n: int) -> list[Step]:
        if item.kind != "feedback":
            return []
        return [item._replace(payload=copy.deepcopy(item.payload), source=("feedback", 1, n))]
