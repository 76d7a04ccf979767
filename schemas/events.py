"""Pydantic models mirroring the ``.avsc`` contracts, with validation.

They guard the edges (the producer SDK, the CLI, control streams): ids are non-empty,
numbers finite, enums known, timestamps UTC at millisecond precision (what
timestamp-millis keeps). ``to_avro`` and ``from_avro`` are the explicit conversions
to and from the dicts the codec reads and writes.

Examples
--------
>>> label = LabelEvent(event_id="e1", model="fraud", label=True, label_time=0)
>>> LabelEvent.from_avro(label.to_avro()) == label
True
>>> LabelEvent(event_id="", model="fraud", label=True, label_time=0)
Traceback (most recent call last):
...
pydantic_core._pydantic_core.ValidationError: 1 validation error for LabelEvent
...
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)

__all__ = [
    "Variant",
    "Task",
    "Stage",
    "DriftKind",
    "WindowKind",
    "RetrainReason",
    "Scalar",
    "LabelValue",
    "Event",
    "FeatureEvent",
    "Contribution",
    "Explanation",
    "SegmentMetrics",
    "PredictionEvent",
    "LabelEvent",
    "MadePrediction",
    "FeedbackEvent",
    "MetricsEvent",
    "DriftEvent",
    "RetrainRequest",
    "OffsetRange",
    "Lineage",
    "Artifact",
    "ModelVersion",
    "DeadLetter",
    "EVENT_TYPES",
]

Variant = Literal["champion", "challenger", "shadow", "online"]
Task = Literal["binary", "multiclass", "regression"]
Stage = Literal["candidate", "champion", "challenger", "shadow", "archived", "rejected"]
DriftKind = Literal["concept", "data"]
WindowKind = Literal["count", "time"]
RetrainReason = Literal["drift", "degradation", "schedule", "manual"]


def _to_utc_millis(value: Any) -> Any:
    """Accept datetimes (naive means UTC) or epoch milliseconds; truncate to milliseconds."""
    if isinstance(value, bool):
        raise ValueError("a timestamp cannot be a boolean")
    if isinstance(value, (int, float)):
        value = datetime.fromtimestamp(value / 1000.0, tz=UTC)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(microsecond=value.microsecond // 1000 * 1000)
    return value


Id = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.\-]+$")]
Timestamp = Annotated[datetime, BeforeValidator(_to_utc_millis)]
Finite = Annotated[float, Field(allow_inf_nan=False)]
Scalar = bool | Finite | Annotated[str, StringConstraints(max_length=4096)] | None
LabelValue = bool | Finite | Annotated[str, StringConstraints(min_length=1, max_length=256)]
Features = Annotated[
    dict[Annotated[str, StringConstraints(min_length=1, max_length=256)], Scalar],
    Field(max_length=10_000),
]


def _probability(value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"a score must be a probability in [0, 1], got {value}")
    return value


Scores = dict[str, Annotated[Finite, AfterValidator(_probability)]]


class Event(BaseModel):
    """Base of the event models: frozen, strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_bytes="base64", val_json_bytes="base64")
    schema_name: ClassVar[str]

    def to_avro(self) -> dict[str, Any]:
        """The dict the codec encodes."""
        return self.model_dump()

    @classmethod
    def from_avro(cls, record: dict[str, Any]) -> Self:
        """Validate a dict the codec decoded."""
        return cls.model_validate(record)


class FeatureEvent(Event):
    schema_name: ClassVar[str] = "FeatureEvent"
    event_id: Id
    model: Name
    entity_id: Id
    event_time: Timestamp
    features: Features


class Contribution(BaseModel):
    """Weight times encoded value of one feature (a one-hot dummy is named ``feature_value``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    feature: Annotated[str, StringConstraints(min_length=1)]
    value: Finite


class Explanation(BaseModel):
    """A linear model's largest contributions, largest magnitude first; ``intercept`` plus
    their sum plus ``rest`` is its raw output (the logit of the True score for logreg)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    intercept: Finite
    contributions: list[Contribution]
    rest: Finite


class PredictionEvent(Event):
    schema_name: ClassVar[str] = "PredictionEvent"
    event_id: Id
    model: Name
    version: Annotated[int, Field(ge=1)]
    variant: Variant
    prediction: Scalar
    scores: Scores
    latency: Annotated[Finite, Field(ge=0.0)]
    event_time: Timestamp
    predicted_at: Timestamp
    explanation: Explanation | None = None


class LabelEvent(Event):
    schema_name: ClassVar[str] = "LabelEvent"
    event_id: Id
    model: Name
    label: LabelValue
    label_time: Timestamp


class MadePrediction(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    version: Annotated[int, Field(ge=1)]
    variant: Variant
    prediction: Scalar
    scores: Scores


class FeedbackEvent(Event):
    schema_name: ClassVar[str] = "FeedbackEvent"
    event_id: Id
    model: Name
    entity_id: Id
    event_time: Timestamp
    features: Features
    label: LabelValue
    label_time: Timestamp
    predictions: list[MadePrediction]


class SegmentMetrics(BaseModel):
    """The metrics of one value of a segmented feature (MetricsEvent v2)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    feature: Annotated[str, StringConstraints(min_length=1)]
    value: str
    samples: Annotated[int, Field(ge=0)]
    metrics: dict[str, Finite]


class MetricsEvent(Event):
    schema_name: ClassVar[str] = "MetricsEvent"
    model: Name
    version: Annotated[int, Field(ge=1)]
    variant: Variant
    window_kind: WindowKind
    window_size: Annotated[Finite, Field(gt=0)]
    samples: Annotated[int, Field(ge=0)]
    metrics: dict[str, Finite]
    emitted_at: Timestamp
    segments: list[SegmentMetrics] = []


class DriftEvent(Event):
    schema_name: ClassVar[str] = "DriftEvent"
    model: Name
    version: Annotated[int, Field(ge=1)]
    variant: Variant
    kind: DriftKind
    detector: Annotated[str, StringConstraints(min_length=1)]
    statistic: Finite
    threshold: Finite | None = None
    feature: str | None = None
    samples: Annotated[int, Field(ge=0)]
    detected_at: Timestamp
    signal: Annotated[str, StringConstraints(min_length=1)] | None = None  # concept drift: what the detector watched


class RetrainRequest(Event):
    schema_name: ClassVar[str] = "RetrainRequest"
    request_id: Id
    model: Name
    reason: RetrainReason
    requested_by: Id
    requested_at: Timestamp
    params: dict[str, Scalar] = Field(default_factory=dict)


class OffsetRange(BaseModel):
    """Records ``start`` (inclusive) to ``end`` (exclusive) of one topic partition."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    topic: Id
    partition: Annotated[int, Field(ge=0)]
    start: Annotated[int, Field(ge=0)]
    end: Annotated[int, Field(ge=0)]


class Lineage(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    parent: int | None = None
    training_data: list[OffsetRange] = Field(default_factory=list)
    samples: Annotated[int, Field(ge=0)] = 0
    library_versions: dict[str, str] = Field(default_factory=dict)
    code_version: str = "unknown"


class Artifact(BaseModel):
    """Where a model's pickle lives (inline bytes or a uri) and how to check it."""

    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_bytes="base64", val_json_bytes="base64")
    inline: bytes | None = None
    uri: str | None = None
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    signature: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    size: Annotated[int, Field(ge=0)]


class ModelVersion(Event):
    schema_name: ClassVar[str] = "ModelVersion"
    model: Name
    version: Annotated[int, Field(ge=1)]
    stage: Stage
    spec: Annotated[str, StringConstraints(min_length=1)]
    task: Task
    params: dict[str, Scalar] = Field(default_factory=dict)
    seed: int | None = None
    share: Annotated[Finite, Field(ge=0.0, le=1.0)] | None = None
    metrics: dict[str, Finite] = Field(default_factory=dict)
    lineage: Lineage = Field(default_factory=Lineage)
    artifact: Artifact
    changed_by: Id
    reason: str
    changed_at: Timestamp
    reigns: list[Annotated[int, Field(ge=1)]] = Field(default_factory=list)

    @property
    def key(self) -> str:
        """The registry topic key: ``model:version``."""
        return f"{self.model}:{self.version}"


class DeadLetter(Event):
    schema_name: ClassVar[str] = "DeadLetter"
    source_topic: str
    source_partition: int
    source_offset: int
    key: bytes | None = None
    value: bytes | None = None
    error_type: Annotated[str, StringConstraints(min_length=1)]
    reason: str
    processor: Annotated[str, StringConstraints(min_length=1)]
    failed_at: Timestamp


EVENT_TYPES: dict[str, type[Event]] = {
    cls.schema_name: cls
    for cls in (
        FeatureEvent,
        PredictionEvent,
        LabelEvent,
        FeedbackEvent,
        MetricsEvent,
        DriftEvent,
        RetrainRequest,
        ModelVersion,
        DeadLetter,
    )
}
