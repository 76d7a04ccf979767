"""The topic catalogue: every topic riverops uses, named with the configured prefix.

Features, predictions and labels share the key ``event_id`` and one partition count, so
the join is local to a partition. The registry topic is compacted and has one partition,
so that the registry fold sees every change in one total order.

Examples
--------
>>> from riverops.settings import Settings
>>> catalogue = TopicCatalogue.from_settings(Settings(topic_prefix="t.", partitions=2))
>>> catalogue.name("features")
't.features'
>>> catalogue.spec("model-registry").config["cleanup.policy"]
'compact'
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from riverops.schemas.errors import TopicError
from riverops.settings import Settings

__all__ = [
    "PREDICTIONS_HEADER", "Source", "TopicRole", "TOPIC_ROLES", "TopicSpec", "TopicCatalogue", "CreateReport", "create_topics"]

#: Kafka header on every prediction: how many predictions were made for its event (champion
#: or challenger, plus shadows). They are produced back to back, so a consumer knows when
#: it has the whole run.
PREDICTIONS_HEADER = "riverops-predictions"

Source = tuple[str, int, int]
"""Where a consumed record lives: (topic, partition, offset); the one position type of
every core's lineage, rejections and dead letters."""

TopicRole = Literal[
    "features",
    "predictions",
    "labels",
    "feedback",
    "metrics",
    "drift",
    "retrain",
    "model-registry",
    "deadletter",
]
TOPIC_ROLES: tuple[TopicRole, ...] = get_args(TopicRole)

# role -> (value schema, key, partitions from settings?, extra topic configs)
_LAYOUT: dict[TopicRole, tuple[str, str, bool, dict[str, str]]] = {
    "features": ("FeatureEvent", "event_id", True, {}),
    "predictions": ("PredictionEvent", "event_id", True, {}),
    "labels": ("LabelEvent", "event_id", True, {}),
    "feedback": ("FeedbackEvent", "model", True, {}),
    "metrics": ("MetricsEvent", "model", False, {}),
    "drift": ("DriftEvent", "model", False, {}),
    "retrain": ("RetrainRequest", "model", False, {}),
    "model-registry": (
        "ModelVersion",
        "model:version",
        False,
        {"cleanup.policy": "compact", "min.compaction.lag.ms": "0"},
    ),
    "deadletter": ("DeadLetter", "source key", True, {}),
}


@dataclass(frozen=True)
class TopicSpec:
    role: TopicRole
    name: str
    partitions: int
    replication: int
    value_schema: str
    key: str
    config: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class TopicCatalogue:
    specs: tuple[TopicSpec, ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> TopicCatalogue:
        specs = tuple(
            TopicSpec(
                role=role,
                name=f"{settings.topic_prefix}{role}",
                partitions=settings.partitions if shared else 1,
                replication=settings.replication_factor,
                value_schema=schema,
                key=key,
                config=dict(config),
            )
            for role, (schema, key, shared, config) in _LAYOUT.items()
        )
        return cls(specs)

    def spec(self, role: TopicRole) -> TopicSpec:
        for spec in self.specs:
            if spec.role == role:
                return spec
        raise KeyError(role)

    def name(self, role: TopicRole) -> str:
        return self.spec(role).name

    def __iter__(self) -> Iterator[TopicSpec]:
        return iter(self.specs)


@dataclass
class CreateReport:
    """What ``create_topics`` did: made, found already there, found but different."""

    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)


def create_topics(admin: Any, catalogue: TopicCatalogue, *, timeout: float = 15.0) -> CreateReport:
    """Create the catalogue's missing topics; idempotent.

    ``admin`` is a ``confluent_kafka.admin.AdminClient``. Topics that exist with fewer
    partitions than the catalogue asks for are reported as mismatched, not changed.
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

    report = CreateReport()
    try:
        metadata = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise TopicError(f"cannot list topics: {exc}") from exc
    missing = []
    for spec in catalogue:
        found = metadata.topics.get(spec.name)
        if found is None or found.error is not None:
            missing.append(spec)
        elif len(found.partitions) != spec.partitions:
            report.mismatched.append(
                f"{spec.name} has {len(found.partitions)} partitions, catalogue says {spec.partitions}"
            )
        else:
            report.existing.append(spec.name)
    if not missing:
        return report
    futures = admin.create_topics(
        [NewTopic(s.name, s.partitions, s.replication, config=s.config) for s in missing],
        request_timeout=timeout,
    )
    for name, future in futures.items():
        try:
            future.result(timeout=timeout)
            report.created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                report.existing.append(name)  # made by a concurrent caller
            else:
                raise TopicError(f"cannot create topic {name}: {exc.args[0].str()}") from exc
    return report
