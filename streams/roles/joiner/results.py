"""What the join core takes and gives: its input records, flush results, outcome counts and gauges."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, get_args

from riverops.kafka.deadletter import Origin
from riverops.kafka.topics import Source
from riverops.roles.joiner.state import Kind
from riverops.schemas.errors import RiveropsError

__all__ = ["Outcome", "OUTCOMES", "KINDS", "Rejection", "JoinInput", "FlushResult", "JoinStats"]

Outcome = Literal[
    "joined",  # feedback emitted
    "duplicates",  # a record for an event that already has it (or was already emitted)
    "redelivered",  # a record below the consumed position of its partition, skipped
    "late_predictions",  # a prediction for an event already emitted: not in its feedback
    "expired_unlabelled",  # features/predictions that got no label within the TTL
    "orphan_labels",  # labels without features or prediction within the TTL: dead-lettered
    "invalid",  # undecodable or inconsistent records: dead-lettered
]
OUTCOMES: tuple[Outcome, ...] = get_args(Outcome)
KINDS: tuple[Kind, ...] = get_args(Kind)
Rejection = tuple[Origin, RiveropsError]
"""A record the core refuses, for :func:`~riverops.kafka.deadletter.dead_letter`: its origin
(source, key, raw payload) and why."""


class JoinInput(NamedTuple):
    """One consumed record as the core needs it (the arguments of :meth:`JoinCore.add`)."""

    kind: Kind
    event_id: str
    payload: bytes | None
    time_ms: int
    source: Source


@dataclass(frozen=True, slots=True)
class FlushResult:
    """What one flush emits: FeedbackEvent record dicts (ready for ``codec.encode``), or
    for a core made with ``encoded=True`` (model, payload) pairs ready to produce (keyed
    by model), the records to dead-letter, the outcome counts of the records added since
    the last flush and, per kind, the records that expired with their pending event since
    then (an unlabelled event's features and predictions, an orphan label)."""

    feedback: list[dict[str, Any]]
    rejected: list[Rejection]
    outcomes: dict[Outcome, int]
    expired: dict[Kind, int]
    encoded: list[tuple[str, bytes]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class JoinStats:
    """Gauges and cumulative outcome counts, for metrics and the status view."""

    pending: int
    pending_bytes: int  # blobs and keys plus ITEM_OVERHEAD per event: an estimate
    done: int
    pending_on_disk: int  # of ``pending``, those spilled to the core's file
    done_on_disk: int
    stream_time_ms: int | None
    joined: int
    duplicates: int
    redelivered: int
    late_predictions: int
    expired_unlabelled: int
    orphan_labels: int
    invalid: int
