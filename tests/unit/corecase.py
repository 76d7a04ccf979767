"""The adapter protocol and the stream of the core contract suite (``test_core_contracts.py``;
the adapters are in ``cores.py`` and ``cores_feedback.py``).

An adapter (:class:`CoreCase`) knows how to build its core, the deterministic stream it is
fed (River's ``synth.Agrawal``, seeded, turned into the core's input records), how to feed
it one batch and how to read what comes out as plain comparable values: emitted records,
rejections as ``("rejected", source, error class, message)`` and, from :meth:`probe`, the
state that later outputs depend on. Every input item has a unique ``(topic, partition,
offset)`` source, the core's own where it takes one, so a rejection names its input.

To add a core: subclass :class:`CoreCase` (``name``, :meth:`stream`, :meth:`new`,
:meth:`feed`, :meth:`source`, :meth:`bad`; :meth:`probe`, :meth:`redelivered`,
:meth:`resent` and :meth:`snapshot`/:meth:`restore` where they apply), add it to ``CASES``
and give every check it cannot take a reason in the suite's ``SKIPS``.
"""

from __future__ import annotations

import copy
import dataclasses
import random
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from river.datasets import synth

from riverops.kafka.topics import Source

__all__ = [
    "T0", "Output", "Event", "events", "features_of", "label_of", "with_challenger", "feedback_of",
    "PROBES", "BASE", "bad_event", "Sources", "rejection", "is_rejection", "chunks", "run",
    "CoreCase",
]

T0 = datetime(2024, 1, 1, tzinfo=UTC)
Output = Any
"""A plain comparable value: records (dicts of scalars and datetimes), tuples, dataclasses."""


@dataclass(frozen=True)
class Event:
    """One labelled event and the champion's P(True) for it."""

    event_id: str
    entity_id: str
    event_time: datetime
    features: dict[str, Any]
    label: bool
    label_time: datetime
    score: float


def events(n: int, *, seed: int = 7) -> list[Event]:
    """``n`` events from River's Agrawal generator (numbers, plus a string feature ``zone``);
    from ``n // 2`` on, salary triples and the champion's scores turn mostly wrong: data
    and concept drift for the monitor. Labels follow their features by 1 to 5 seconds."""
    rng = random.Random(seed)
    out = []
    for i, (x, y) in enumerate(synth.Agrawal(seed=seed).take(n)):
        drifted = i >= n // 2
        features: dict[str, Any] = {k: float(v) for k, v in x.items()}
        features["zone"] = f"z{int(x['zipcode'])}"
        if drifted:
            features["salary"] *= 3.0
        right, p = rng.random() < (0.3 if drifted else 0.9), rng.uniform(0.6, 0.95)
        t = T0 + timedelta(seconds=i)
        out.append(Event(f"e{i:03d}", f"card{i % 7}", t, features, bool(y),
                         t + timedelta(seconds=1 + (i * 7) % 5), p if bool(y) == right else 1 - p))
    return out


def features_of(e: Event, *, model: str = "fraud") -> dict[str, Any]:
    """The FeatureEvent record of an event."""
    return {"event_id": e.event_id, "model": model, "entity_id": e.entity_id,
            "event_time": e.event_time, "features": dict(e.features)}


def label_of(e: Event, *, model: str = "fraud") -> dict[str, Any]:
    """The LabelEvent record of an event."""
    return {"event_id": e.event_id, "model": model, "label": e.label, "label_time": e.label_time}


def with_challenger(e: Event) -> bool:
    """Whether a challenger scored the event too (one event in three, by its id)."""
    return zlib.crc32(e.event_id.encode()) % 3 == 0


def feedback_of(e: Event, *, model: str = "fraud") -> dict[str, Any]:
    """The FeedbackEvent record the joiner makes of an event: the champion's prediction,
    and a challenger's (the champion's opposite) for every third event."""
    made = [{"version": 1, "variant": "champion", "prediction": e.score >= 0.5,
             "scores": {"False": 1 - e.score, "True": e.score}}]
    if with_challenger(e):
        made.append({"version": 2, "variant": "challenger", "prediction": e.score < 0.5,
                     "scores": {"False": e.score, "True": 1 - e.score}})
    return {**features_of(e, model=model), "label": e.label, "label_time": e.label_time,
            "predictions": made}


PROBES = [e.features for e in events(5, seed=11)]
"""Feature rows a model's answers are read on, to compare models without their internals."""
BASE = events(1, seed=3)[0]
"""The event the bad inputs are made from."""


def bad_event(event_id: str, **features: Any) -> Event:
    """:data:`BASE` under another id, some features replaced."""
    return dataclasses.replace(BASE, event_id=event_id, features={**BASE.features, **features})


class Sources:
    """Fresh sources for bad inputs, on a partition of their own (9)."""

    def __init__(self) -> None:
        self._next: Counter[str] = Counter()

    def __call__(self, topic: str) -> Source:
        self._next[topic] += 1
        return (topic, 9, self._next[topic] - 1)


def rejection(source: Source, error: BaseException) -> tuple[str, Source, str, str]:
    """A refusal as a comparable output."""
    return ("rejected", source, type(error).__name__, str(error))


def is_rejection(output: Output) -> bool:
    return isinstance(output, tuple) and len(output) == 4 and output[0] == "rejected"


def chunks(items: Sequence[Any], size: int) -> list[list[Any]]:
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


class CoreCase:
    """How the suite drives one core (see the module docstring)."""

    name: ClassVar[str]
    batch_size: ClassVar[int] = 8
    stateless: ClassVar[bool] = False
    """No per-event state: a repeated input is processed again, the same way (the scorer)."""
    snapshot_keeps_dedupe: ClassVar[bool] = True
    """Whether the restored core still drops re-deliveries of records before the snapshot."""
    not_restored: ClassVar[dict[str, str]] = {}
    """Probe entries a restored core legitimately does not carry over, and why."""

    def stream(self) -> list[Any]:
        """The good input items in order, fresh objects on every call."""
        raise NotImplementedError

    def new(self) -> Any:
        """A fresh core, configured as the suite wants it."""
        raise NotImplementedError

    def feed(self, core: Any, batch: list[Any]) -> list[Output]:
        """Give the core one batch; what came out, as comparable values."""
        raise NotImplementedError

    def source(self, item: Any) -> Source:
        """The unique (topic, partition, offset) of an input item."""
        raise NotImplementedError

    def bad(self, stream: list[Any], at: int) -> dict[str, list[Any]]:
        """Named bad inputs (each a few items, with sources of their own) that must come back
        as rejections when inserted before ``stream[at]``; at least one item of each must be
        rejected, and nothing else may change."""
        raise NotImplementedError

    def probe(self, core: Any) -> dict[str, Output]:
        """The state later outputs depend on, read without changing it."""
        return {}

    def redelivered(self, item: Any) -> list[Any]:
        """The item as Kafka re-delivers it (same record, same source)."""
        return [copy.deepcopy(item)]

    def resent(self, item: Any, n: int) -> list[Any]:
        """The same event sent again at a new source (``n``: the item's index, to make one);
        none by default: to a core that takes no sources it is a re-delivery."""
        return []

    def snapshot(self, core: Any) -> Any:
        """The core's snapshot, as the role would store it."""
        raise NotImplementedError

    def restore(self, snapshot: Any) -> Any:
        """A fresh core restored from ``snapshot``, as the role would restore it."""
        raise NotImplementedError


def run(case: CoreCase, core: Any, batches: list[list[Any]]) -> list[Output]:
    """Each batch's outputs, then the final probe."""
    return [case.feed(core, batch) for batch in batches] + [case.probe(core)]
