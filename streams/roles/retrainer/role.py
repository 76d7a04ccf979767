"""The retrainer as a worker-runtime role: triggers, retraining on recent feedback,
promotion, rollback.

The runtime reads feedback, drift, metrics and retrain records and decodes them (a record
it cannot decode becomes a dead letter); :class:`RetrainerRole` hands them to the pure
:class:`~riverops.roles.retrainer.triggers.RetrainerCore` and carries out what it says:

- a trigger becomes a RetrainRequest on the retrain topic, through the runtime's outputs,
  so a manual request (``riverops retrain``, :func:`request_retrain`) and an automatic one
  travel the same way and wait the same way;
- a request that may run retrains the model's spec on its window (after a drift alarm
  first a fast recovery run on the post-alarm rows, then the better of two candidates:
  :func:`~riverops.roles.retrainer.recovery.judge`),
  scores the candidate and the champion's frozen artifact on the same held-out tail,
  registers the candidate with its metrics and lineage and applies the promotion policy;
  a retrain that fails is counted and logged, and the role goes on (a broker's refusal,
  a configuration matter, stops the worker as everywhere else);
- a rollback of a new champion is published as the registry records that carry it.

Feedback whose features fail :func:`~riverops.schemas.validation.validate_features` is
dead-lettered on arrival, so it never reaches a training frame.

The window lives in memory. On partition assignment (a start, a restart, a rebalance) the
role rewinds each feedback partition ``window_events`` records before its committed
offset, so the window is replayed from the topic rather than starting empty; feedback
only fills windows, so reading it twice has no other effect, and the commit never goes
back behind the offset that was committed. A retrain partition's commit stays before the
oldest request still waiting, so a crash does not lose it.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import TopicPartition

from riverops.kafka.outbox import Outbox
from riverops.kafka.topics import TopicCatalogue
from riverops.modelops import model_loader, register_trained
from riverops.models.registry import Registry
from riverops.roles.retrainer.frame import Source, feedback_frame
from riverops.roles.retrainer.policy import apply
from riverops.roles.retrainer.recovery import judge
from riverops.roles.retrainer.triggers import Offsets, RetrainerCore, Rollback, Trigger
from riverops.runtime import Context, Input, Outputs, RoleSpec, run
from riverops.schemas.errors import AuthorizationError, InvalidEventError, RiveropsError
from riverops.schemas.events import ModelVersion, OffsetRange, RetrainRequest
from riverops.schemas.validation import validate_features
from riverops.settings import Settings
from riverops.telemetry import Telemetry

__all__ = ["RetrainerStats", "RetrainerRole", "run_retrainer", "request_retrain", "new_request",
           "request_story"]

log = logging.getLogger(__name__)

_STORIES = {
    ("drift", "monitor"): "retrain requested after the monitor's concept-drift alarm",
    ("degradation", "retrainer"): "retrain requested by the retrainer after the champion's metric degraded",
    ("schedule", "schedule"): "scheduled retrain",
}  # fmt: skip


def request_story(reason: str, by: str) -> str:
    """What a retrain request says happened, for the reason of the version it makes.

    >>> request_story("degradation", "retrainer")
    "retrain requested by the retrainer after the champion's metric degraded"
    >>> request_story("nightly", "alice")
    'retrain requested by alice (nightly)'
    """
    return _STORIES.get((reason, by), f"retrain requested by {by} ({reason})")


@dataclass
class RetrainerStats:
    """Counts of the retrainer, for tests, the status view and logs."""

    requests: int = 0
    retrains: int = 0
    failed: int = 0
    triggered: int = 0  # requests this role published
    decisions: list[str] = field(default_factory=list)
    rollbacks: int = 0
    dead_letters: int = 0
    assigned: bool = False


def new_request(model: str, *, reason: str, by: str,
                params: dict[str, Any] | None = None) -> RetrainRequest:
    """A RetrainRequest with a fresh id, made now (``reason`` and ``params`` are checked
    by the event model: a RetrainReason, scalar values)."""
    return RetrainRequest(request_id=uuid.uuid4().hex, model=model, reason=reason, requested_by=by,
                          requested_at=datetime.now(UTC), params=params or {})


def request_retrain(settings: Settings, model: str, *, reason: str, by: str,
                    params: dict[str, Any] | None = None) -> RetrainRequest:
    """Publish a RetrainRequest and wait until it is acknowledged (``riverops retrain``)."""
    request = new_request(model, reason=reason, by=by, params=params)
    unbatched: dict[str, Any] = {"linger.ms": 0}  # one record: send it now
    outbox = Outbox(settings, **unbatched)
    try:
        outbox.send(TopicCatalogue.from_settings(settings).name("retrain"), "RetrainRequest",
                    [request.to_avro()], key="model")
        outbox.flush("the retrain request", timeout=15)
    finally:
        outbox.close()
    return request


class RetrainerRole(RoleSpec):
    """Feedback, drift, metrics and retrain requests in; retrain requests and registry
    records out (see the module docstring)."""

    name = "retrainer"
    inputs = ("feedback", "drift", "metrics", "retrain")
    follows_registry = True

    def __init__(self, settings: Settings, *, stats: RetrainerStats | None = None) -> None:
        self.stats: RetrainerStats = stats or RetrainerStats()
        self.settings = settings
        self.section = settings.retrainer
        self.core = RetrainerCore(settings.retrainer)
        self._load = model_loader(settings)
        self._floors: Offsets = {}  # feedback partition -> its committed offset at assignment

    def start(self, ctx: Context) -> None:
        super().start(ctx)
        self._feedback_topic = ctx.catalogue.name("feedback")

    # -- partitions ----------------------------------------------------------------------
    def assign(self, partitions: list[TopicPartition], committed: Offsets | None) -> None:
        """Rewind each feedback partition ``window_events`` records before its committed
        offset: the window is replayed from the topic."""
        committed = committed or {}  # unknown: read on from where the group is
        for tp in partitions:
            key = (tp.topic, tp.partition)
            if tp.topic == self._feedback_topic and key in committed:
                self._floors[key] = committed[key]
                tp.offset = max(0, committed[key] - self.section.window_events)

    def revoke(self, partitions: list[TopicPartition]) -> None:
        gone = [(tp.topic, tp.partition) for tp in partitions]
        self.core.forget(gone)
        for key in gone:
            self._floors.pop(key, None)

    def offsets(self, consumed: Offsets) -> Offsets:
        """Feedback: never behind the offset committed before the replay; retrain: before
        the oldest request still waiting."""
        held = self.core.holding()
        out: Offsets = {}
        for key, offset in consumed.items():
            if key in held:
                offset = min(offset, held[key])
            out[key] = max(offset, self._floors.get(key, 0))
        return out

    # -- records -------------------------------------------------------------------------
    def handle(self, batch: list[Input], out: Outputs) -> None:
        now = time.monotonic()
        for item in batch:
            record = item.value
            if item.topic == "feedback":
                self._feedback(item, out)
            elif item.topic == "drift":
                self._emit(self.core.on_drift(record, now=now), out)
            elif item.topic == "metrics":
                for action in self.core.on_metrics(record, self.ctx.registry, now=now):
                    if isinstance(action, Rollback):
                        self._roll_back(action)
                    else:
                        self._emit(action, out)
            else:
                self.core.on_request(record, ends=self.ctx.ends("feedback"), now=now, source=item.source)

    def _feedback(self, item: Input, out: Outputs) -> None:
        try:
            validate_features(item.value)
        except InvalidEventError as exc:
            if not self._replayed(item.source):  # dead-lettered when it was first read
                out.reject(item.message, exc)
            return
        self.core.add_feedback(item.value, item.source)

    def _replayed(self, source: Source) -> bool:
        return source[2] < self._floors.get((source[0], source[1]), 0)

    def _emit(self, trigger: Trigger | None, out: Outputs) -> None:
        if trigger is None:
            return
        request = new_request(trigger.model, reason=trigger.reason, by=trigger.by, params=trigger.params)
        out.add("retrain", [request.to_avro()])
        self.stats.triggered += 1
        log.info("retrain of %s requested: %s %s", trigger.model, trigger.reason, trigger.params)

    def tick(self, now: float, out: Outputs) -> None:
        for request in self.core.ready(now=now, at_end=self._caught_up):
            self._run(request)
        for trigger in self.core.on_schedule(self.ctx.registry.models, now=now):
            self._emit(trigger, out)

    def _caught_up(self, ends: Offsets) -> bool:
        """The window holds the feedback that was out when the request arrived."""
        return self.ctx.assigned("feedback") and self.ctx.at_end(ends)

    # -- registry writes -----------------------------------------------------------------
    def _roll_back(self, rollback: Rollback) -> None:
        model, version, decision = rollback.model, rollback.version, rollback.decision
        stale: list[RiveropsError] = []

        def build(registry: Registry) -> list[ModelVersion]:
            try:
                return apply(decision, registry, model, version, by="retrainer", reason="live check")
            except RiveropsError as exc:  # stale: the registry moved on since the metrics
                stale.append(exc)
                return []

        if not self.ctx.publish_change(build):  # nothing published: the rollback was stale
            log.error("no rollback of %s v%s: %s", model, version, "; ".join(map(str, stale)))
            return
        self.stats.rollbacks += 1
        if self.ctx.telemetry is not None:
            self.ctx.telemetry.count_decision(model, "rollback")
        self.stats.decisions.append(f"{model} v{version}: rollback ({decision.reason})")
        log.warning("rolled back %s v%s: %s", model, version, decision.reason)

    def _run(self, request: dict[str, Any]) -> None:
        """Retrain for one request; a failure is counted and logged, never raised (but a
        broker's refusal is: it is the worker's configuration, not this retrain)."""
        model = request["model"]
        self.stats.requests += 1
        try:
            self._retrain(request)
        except AuthorizationError:
            raise
        except (RiveropsError, ValueError) as exc:
            self._failed(model)
            log.error("retrain of %s failed: %s", model, exc)
        except Exception:  # a bug in one retrain must not stop the role
            self._failed(model)
            log.exception("retrain of %s failed unexpectedly", model)

    def _failed(self, model: str) -> None:
        self.stats.failed += 1
        if self.ctx.telemetry is not None:
            self.ctx.telemetry.count_decision(model, "failed")

    def _retrain(self, request: dict[str, Any]) -> None:
        model, section = request["model"], self.section
        began = time.monotonic()
        champion = self.ctx.registry.champion(model)
        if champion is None:
            raise InvalidEventError(f"no champion for {model}: nothing to retrain from")
        window, seconds = self.core.training_window(request)
        frame = feedback_frame([r for r, _ in window], sources=[s for _, s in window], window_seconds=seconds)
        judged = judge(self.core, request, frame, spec_name=champion.spec, champion=self._load(champion))
        stage = f"fast recovery at {judged.stage} post-alarm events, " if judged.stage else ""
        why = f"{request_story(request['reason'], request['requested_by'])}, {stage}on {judged.learned}"
        result, decision = judged.result, judged.decision
        if judged.retry is not None:
            log.info("%s: %s (%s); the request waits for %s post-alarm events", model,
                     decision.action, decision.reason, judged.retry)
        if result is None or not judged.register:  # a fast run that did not promote
            self.stats.decisions.append(f"{model}: {stage}{decision.action}, not registered "
                                        f"({decision.reason})")
            return
        versions: list[int] = []

        def change(registry: Registry) -> list[ModelVersion]:
            """The candidate's records and the decision's, in one change: one registry
            transaction, not two (each costs the loop about a second under exactly_once)."""
            added = register_trained(
                self.settings, registry, model, result.model, spec_name=result.spec,
                stage="candidate", by="retrainer", reason=why, seed=section.seed,
                metrics=result.metrics, samples=result.samples, parent=champion.version,
                training_data=[OffsetRange(**d) for d in result.training_data])
            versions[:] = [added[-1].version]
            after = copy.deepcopy(registry).apply_all(added)
            return added + apply(decision, after, model, added[-1].version, by="retrainer", reason=why)

        self.ctx.publish_change(change)
        version = versions[-1]
        self.stats.retrains += 1
        telemetry = self.ctx.telemetry
        if telemetry is not None:
            telemetry.count_version(model)
            telemetry.count_decision(model, decision.action)
            telemetry.observe_latency("retrain", time.monotonic() - began)
        self.stats.decisions.append(f"{model} v{version}: {decision.action} ({decision.reason})")
        log.info("%s v%s: %s (%s)", model, version, decision.action, decision.reason)


def run_retrainer(settings: Settings, *, stop: threading.Event, group_id: str = "riverops-retrainer",
                  stats: RetrainerStats | None = None, telemetry: Telemetry | None = None) -> RetrainerStats:
    """Retrain on demand until ``stop`` is set; every knob is in ``settings.retrainer``."""
    role = RetrainerRole(settings, stats=stats)
    run(role, settings, stop=stop, group_id=group_id, telemetry=telemetry)
    return role.stats
