"""The exactly-once checker: every riverops topic read ``read_committed`` to its end, and
what it proves about the outputs (issue 15's table).

- each feature event has exactly one *served* prediction (the champion's, or the
  challenger's for the events its share routes there), plus one from each expected shadow
  version; none is lost, none repeated (two for the same event, variant and version);
- each labelled event (a label whose features exist) has exactly one feedback record;
- the monitor counted each of them once: per (model, version, variant), the largest
  ``samples`` of its published MetricsEvents (a cumulative count of the outcomes it
  folded in since it started) equals the outcomes the distinct feedback holds;
- the registry's distinct (model, version) pairs, the dead letters, and the record
  counts of every other topic (drift, retrain, a changelog).

The monitor keeps its counts in memory: a monitor restarted mid-stream publishes counts
since its restart, and the check fails for it (by design: it says so). Its last window
must be emitted after the last feedback (wait ``monitor.emit_seconds`` before auditing).
"""

from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from riverops.kafka.clients import at_end, high_watermarks, make_consumer, ok
from riverops.kafka.topics import TopicCatalogue, TopicRole
from riverops.roles.monitor.core import Key, infer_task
from riverops.roles.monitor.windows import outcome_of
from riverops.schemas.errors import DecodeError, InvalidEventError
from riverops.schemas.events import Task
from riverops.settings import Settings

__all__ = ["Tally", "AuditReport", "audit", "tally"]

EventKey = tuple[str, str]
"""model, event_id"""

_DECODED: dict[TopicRole, str] = {
    "features": "FeatureEvent", "predictions": "PredictionEvent", "labels": "LabelEvent",
    "feedback": "FeedbackEvent", "metrics": "MetricsEvent", "model-registry": "ModelVersion",
    "deadletter": "DeadLetter",
}


@dataclass(frozen=True)
class Tally:
    """How often each expected event got its output: exactly once, never, more than once."""

    expected: int
    once: int
    lost: int
    duplicated: int
    """Events with a repeated output."""
    surplus: int
    """Records beyond one per event (the repeats themselves)."""
    unexpected: int = 0
    """Events with an output that none was expected for (no features, no label)."""

    @property
    def exact(self) -> bool:
        return self.once == self.expected and not (self.lost or self.duplicated or self.unexpected)


def tally(expected: Iterable[EventKey], outputs: Iterable[tuple[EventKey, Any]]) -> Tally:
    """Count ``outputs`` ((event, output key) pairs) against the ``expected`` events: an
    event is once when each of its output keys occurs once, duplicated when one repeats.

    >>> tally([("m", "a"), ("m", "b")], [(("m", "a"), 1), (("m", "a"), 1), (("m", "c"), 1)])
    Tally(expected=2, once=0, lost=1, duplicated=1, surplus=1, unexpected=1)
    """
    wanted = set(expected)
    seen: dict[EventKey, Counter[Any]] = defaultdict(Counter)
    for event, key in outputs:
        seen[event][key] += 1
    repeated = {e for e, keys in seen.items() if e in wanted and max(keys.values()) > 1}
    return Tally(
        expected=len(wanted),
        once=sum(1 for e in wanted if e in seen and e not in repeated),
        lost=sum(1 for e in wanted if e not in seen),
        duplicated=len(repeated),
        surplus=sum(n - 1 for e in repeated for n in seen[e].values() if n > 1),
        unexpected=sum(1 for e in seen if e not in wanted),
    )


@dataclass(frozen=True)
class AuditReport:
    """What the topics hold; ``exact`` when every check holds."""

    features: int
    """Distinct feature events."""
    feature_records: int
    predictions: Tally
    """One served prediction (champion or challenger) per feature event; a re-score under
    another version counts as a repeat too."""
    variants: dict[str, int]
    """Prediction records per variant."""
    shadows: Tally | None
    """One prediction per feature event from each expected shadow version (None: none expected)."""
    labelled: int
    feedback: Tally
    monitor: dict[Key, tuple[int, int]]
    """(model, version, variant) -> (largest samples published, outcomes in the distinct feedback)."""
    registry: frozenset[tuple[str, int]]
    dead_letters: int
    others: dict[str, int] = field(default_factory=dict)
    """Records of the other topics, by name."""
    undecodable: dict[str, int] = field(default_factory=dict)
    unread: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)
    """Partitions not read to their end by the deadline: (position, high watermark). A
    transaction left open holds a read_committed consumer at its first offset."""

    @property
    def monitor_exact(self) -> bool:
        return bool(self.monitor) and all(published == want for published, want in self.monitor.values())

    @property
    def exact(self) -> bool:
        return (self.predictions.exact and (self.shadows is None or self.shadows.exact)
                and self.feedback.exact and self.monitor_exact and not self.unread
                and not self.undecodable)

    def markdown_rows(self) -> list[str]:
        """``| output | expected | once | lost | duplicated (repeats) | exact |`` rows."""
        def row(name: str, t: Tally) -> str:
            extra = f", {t.unexpected} unexpected" if t.unexpected else ""
            return (f"| {name} | {t.expected} | {t.once} | {t.lost} | {t.duplicated} ({t.surplus}{extra}) "
                    f"| {'yes' if t.exact else 'NO'} |")
        rows = [f"| feature events | {self.features} | | | {self.feature_records - self.features} records | |",
                row("predictions (" + ", ".join(f"{v} {n}" for v, n in sorted(self.variants.items())) + ")",
                    self.predictions)]
        if self.shadows is not None:
            rows.append(row("shadow predictions", self.shadows))
        rows.append(row("feedback", self.feedback))
        for (model, version, variant), (published, want) in sorted(self.monitor.items()):
            rows.append(f"| monitor samples {model} v{version} {variant} | {want} | {published} | | "
                        f"| {'yes' if published == want else 'NO'} |")
        rows.append(f"| registry versions | {len(self.registry)} | | | | |")
        rows.append(f"| dead letters | {self.dead_letters} | | | | |")
        if self.unread:
            rows.append(f"| partitions not read to the end | {len(self.unread)} | | | | NO |")
        return rows

    def markdown(self) -> str:
        head = ["| output | expected | once | lost | duplicated (repeats) | exact |",
                "|---|---|---|---|---|---|"]
        return "\n".join(head + self.markdown_rows())


def _read(settings: Settings, timeout: float) -> tuple[dict[str, list[bytes | None]], dict[tuple[str, int], tuple[int, int]]]:
    """Every record value of the catalogue's topics (and the prefix's other topics),
    read_committed from the beginning until each partition's high watermark."""
    consumer: Consumer = make_consumer(settings, f"riverops-audit-{uuid.uuid4().hex[:8]}",
                                       **{"isolation.level": "read_committed"})
    try:
        metadata = consumer.list_topics(timeout=15)
        names = {spec.name for spec in TopicCatalogue.from_settings(settings)}
        if settings.topic_prefix:
            names |= {n for n in metadata.topics if n.startswith(settings.topic_prefix)}
        partitions = [(n, p) for n in sorted(names) if n in metadata.topics
                      for p in metadata.topics[n].partitions]
        consumer.assign([TopicPartition(t, p, OFFSET_BEGINNING) for t, p in partitions])
        values: dict[str, list[bytes | None]] = {name: [] for name, _ in partitions}
        deadline = time.monotonic() + timeout
        while not at_end(consumer, partitions) and time.monotonic() < deadline:
            for message in consumer.consume(10_000, 0.5):
                if ok(message):
                    values[message.topic() or ""].append(message.value())
        unread: dict[tuple[str, int], tuple[int, int]] = {}
        if not at_end(consumer, partitions):
            highs = high_watermarks(consumer, partitions)
            try:
                positions = consumer.position([TopicPartition(t, p) for t, p in partitions])
            except KafkaException:
                positions = []
            for tp in positions:
                high = highs.get((tp.topic, tp.partition), -1)
                if high != 0 and tp.offset < high:
                    unread[(tp.topic, tp.partition)] = (tp.offset, high)
        return values, unread
    finally:
        consumer.close()


def audit(settings: Settings, *, shadow_versions: Collection[tuple[str, int]] = (),
          timeout: float = 60.0) -> AuditReport:
    """Read the topics of ``settings`` read_committed and check them (see the module).

    ``shadow_versions``: the (model, version) pairs that score every event in shadow.
    """
    catalogue = TopicCatalogue.from_settings(settings)
    raw, unread = _read(settings, timeout)
    codec = settings.codec()
    decoded: dict[TopicRole, list[dict[str, Any]]] = {}
    undecodable: Counter[str] = Counter()
    for role, schema in _DECODED.items():
        decoded[role] = []
        for value in raw.pop(catalogue.name(role), []):
            if value is None:
                continue  # a tombstone (the compacted registry)
            try:
                decoded[role].append(codec.decode(schema, value))
            except DecodeError:
                undecodable[catalogue.name(role)] += 1
    features = [(r["model"], r["event_id"]) for r in decoded["features"]]
    events = set(features)
    served = [p for p in decoded["predictions"] if p["variant"] != "shadow"]
    shadowed = [p for p in decoded["predictions"] if p["variant"] == "shadow"
                and (p["model"], p["version"]) in set(shadow_versions)]
    shadows = None
    if shadow_versions:
        wanted = {(m, e) for m, e in events if any(m == sm for sm, _ in shadow_versions)}
        shadows = tally(wanted, (((p["model"], p["event_id"]), p["version"]) for p in shadowed))
    labelled = {(r["model"], r["event_id"]) for r in decoded["labels"]} & events
    first: dict[EventKey, dict[str, Any]] = {}
    for record in decoded["feedback"]:
        first.setdefault((record["model"], record["event_id"]), record)
    return AuditReport(
        features=len(events),
        feature_records=len(features),
        predictions=tally(events, (((p["model"], p["event_id"]), 0) for p in served)),
        variants=dict(Counter(str(p["variant"]) for p in decoded["predictions"])),
        shadows=shadows,
        labelled=len(labelled),
        feedback=tally(labelled, ((key, 0) for key in
                                  ((r["model"], r["event_id"]) for r in decoded["feedback"]))),
        monitor=_monitor(decoded["metrics"], first.values(), decoded["model-registry"]),
        registry=frozenset((r["model"], int(r["version"])) for r in decoded["model-registry"]),
        dead_letters=len(decoded["deadletter"]),
        others={name: len(values) for name, values in raw.items()},
        undecodable=dict(undecodable),
        unread=unread,
    )


def _monitor(metrics: list[dict[str, Any]], feedback: Iterable[dict[str, Any]],
             registry: list[dict[str, Any]]) -> dict[Key, tuple[int, int]]:
    """Per key: the largest samples published, and the outcomes the monitor's rule counts
    in the distinct feedback (a prediction with nothing to score is not an outcome)."""
    tasks: dict[str, Task] = {r["model"]: r["task"] for r in registry if r["stage"] == "champion"}
    published: dict[Key, int] = {}
    for m in metrics:
        key: Key = (m["model"], int(m["version"]), m["variant"])
        published[key] = max(published.get(key, 0), int(m["samples"]))
    counted: Counter[Key] = Counter()
    for record in feedback:
        task = tasks.setdefault(record["model"], infer_task(record["label"]))
        for made in record["predictions"]:
            try:
                scored = outcome_of(task, record["label"], made) is not None
            except InvalidEventError:
                scored = False  # dead-lettered by the monitor
            if scored:
                counted[(record["model"], int(made["version"]), made["variant"])] += 1
    return {key: (published.get(key, 0), counted.get(key, 0)) for key in published.keys() | counted.keys()}
