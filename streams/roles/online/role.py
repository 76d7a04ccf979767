"""The ``online`` role on the worker runtime: River's predict-then-learn over Kafka, one model
object per model name.

Features and labels are consumed together and put back in time order by
:class:`~riverops.roles.online.timeorder.TimeOrderMerge` (the Kafka timestamp is the event
or label time), then handed to :class:`~riverops.roles.online.core.OnlineCore`, which
predicts on features (published as variant ``online``) and learns from labels. Fed a stream
whose labels follow their features by k events, its progressive metrics equal
``river.evaluate.progressive_val_score(..., delay=k)``; they are exported as the
``riverops_online_metric`` gauge.

Limits (documented, not hidden): the online model and its pending features live in
memory, so a restart starts again from the champion; offsets are committed only when the
merge is drained (everything consumed was released, at the latest after
``settings.online.idle_seconds`` without input), so a crash replays from there; the online
prediction of an event is produced after its scorer predictions, and a joiner that already
emitted the event counts it as a late prediction.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import TopicPartition

from riverops.kafka.deadletter import Origin
from riverops.kafka.topics import PREDICTIONS_HEADER
from riverops.modelops import model_loader
from riverops.roles.online.core import OnlineCore, OnlineInput
from riverops.roles.online.timeorder import Kind, TimeOrderMerge
from riverops.runtime import Input, Offsets, Outputs, RoleSpec, run
from riverops.schemas.errors import InvalidEventError
from riverops.settings import Settings
from riverops.telemetry import Telemetry

__all__ = ["OnlineStats", "OnlineRole", "run_online"]

log = logging.getLogger(__name__)

_KINDS: dict[str, Kind] = {"features": "features", "labels": "label"}


@dataclass
class OnlineStats:
    """Counts of the online role and its cores (one per model), for tests and logs."""

    predictions: int = 0
    learned: int = 0
    rejected: int = 0
    """Released records refused by the cores (or for a model without a champion)."""
    dead_letters: int = 0
    """Every dead letter: these and the undecodable or oversized records (kept by the runtime)."""
    assigned: bool = False
    cores: dict[str, OnlineCore] = field(default_factory=dict)


def _one_prediction(_prediction: dict[str, Any]) -> list[tuple[str, bytes]]:
    """Each online prediction is the only one of its run (see PREDICTIONS_HEADER)."""
    return [(PREDICTIONS_HEADER, b"1")]


class OnlineRole(RoleSpec):
    """Features and labels merged in time order; each model's :class:`OnlineCore` starts
    from its champion and predicts, then learns."""

    name = "online"
    inputs = ("features", "labels")
    follows_registry = True
    consumer_config = {"partition.assignment.strategy": "range"}

    def __init__(self, settings: Settings, *, stats: OnlineStats | None = None) -> None:
        self.stats: OnlineStats = stats or OnlineStats()
        self.idle_seconds = settings.online.idle_seconds
        self.merge: TimeOrderMerge[OnlineInput] = TimeOrderMerge()
        self._load = model_loader(settings)
        self._last_input = time.monotonic()
        self._drained: Offsets = {}

    def assign(self, partitions: list[TopicPartition], committed: Offsets | None) -> None:
        for tp in partitions:
            self.merge.register((tp.topic, tp.partition))

    def revoke(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.merge.unregister((tp.topic, tp.partition))
            self._drained.pop((tp.topic, tp.partition), None)

    def handle(self, batch: list[Input], out: Outputs) -> None:
        for item in batch:
            topic, partition, offset = item.source
            kind = _KINDS[item.topic]
            self.merge.push((topic, partition), item.message.timestamp()[1], kind,
                            OnlineInput(kind, item.value, (topic, partition, offset)),
                            key=item.value["event_id"])
        self._last_input = time.monotonic()

    def tick(self, now: float, out: Outputs) -> None:
        released = self.merge.release()
        if now - self._last_input >= self.idle_seconds:
            released += self.merge.drain()
        if released:
            started = time.perf_counter()
            self._process(released, out)
            if self.ctx.telemetry is not None:
                self.ctx.telemetry.observe_latency("online", time.perf_counter() - started)
                self.ctx.telemetry.export_online({m: c.metrics() for m, c in self.stats.cores.items()})

    def offsets(self, consumed: Offsets) -> Offsets:
        """All consumed offsets once every record consumed was released and its outputs
        delivered (the merge is empty); until then, those of the last time it was."""
        if self.merge.pending == 0:
            self._drained.update(consumed)  # ``consumed`` may be a revoked subset
        return {k: v for k, v in self._drained.items() if k in consumed}

    def _core_for(self, model: str) -> OnlineCore:
        core = self.stats.cores.get(model)
        if core is None:
            champion = self.ctx.registry.champion(model)
            if champion is None:
                raise InvalidEventError(f"unknown model {model!r} (no champion to start from)")
            core = OnlineCore(copy.deepcopy(self._load(champion)), version=champion.version,
                              task=champion.task)
            self.stats.cores[model] = core
            log.info("online %s starts from champion v%s", model, champion.version)
        return core

    def _process(self, released: list[OnlineInput], out: Outputs) -> None:
        now = datetime.now(UTC)
        predictions: list[dict[str, Any]] = []
        rejected = 0
        for item in released:
            try:
                result = self._core_for(str(item.record.get("model", ""))).process([item], predicted_at=now)
            except InvalidEventError as exc:
                out.reject(_origin(item), exc)
                rejected += 1
                continue
            predictions += result.predictions
            self.stats.learned += result.learned
            for refused in result.rejected:
                out.reject(_origin(OnlineInput(item.kind, refused.record, refused.source)), refused.error)
            rejected += len(result.rejected)
        out.add("predictions", predictions, headers=_one_prediction)
        self.stats.predictions += len(predictions)
        self.stats.rejected += rejected


def _origin(item: OnlineInput) -> Origin:
    """Where a released record came from (its message is gone: no raw value)."""
    key = item.record.get("event_id")
    return Origin(item.source or ("", 0, 0), key_=str(key) if key else None)


def run_online(settings: Settings, *, stop: threading.Event, group_id: str = "riverops-online",
               stats: OnlineStats | None = None, telemetry: Telemetry | None = None) -> OnlineStats:
    """Predict and learn online until ``stop`` is set."""
    role = OnlineRole(settings, stats=stats)
    run(role, settings, stop=stop, group_id=group_id, telemetry=telemetry)
    return role.stats
