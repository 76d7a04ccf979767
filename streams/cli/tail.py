"""``riverops tail TOPIC``: a topic's records, decoded, one JSON line each.

Group-less: the partitions are assigned (from the beginning, or from the end for only new
records) and no offset is ever committed, so tailing changes no consumer group's lag.
Values are decoded with the topic's schema from the catalogue; a record that does not
decode is printed as a line with an ``error`` field and the raw bytes, not a crash.

Values that JSON has no type for are rendered as Avro's JSON encoding does, so a line
reads back into the contract: ``bytes`` as a string of the code points 0-255 (ASCII stays
readable), datetimes as ISO 8601; non-finite floats become the strings ``"NaN"``,
``"Infinity"`` and ``"-Infinity"``.

Examples
--------
>>> from datetime import UTC, datetime
>>> json_safe({"at": datetime(2026, 1, 2, tzinfo=UTC), "raw": b"e-1\\x00", "x": float("nan")})
{'at': '2026-01-02T00:00:00+00:00', 'raw': 'e-1\\x00', 'x': 'NaN'}
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import click
from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    Message,
    TopicPartition,
)

from riverops.cli.common import broker_settings, cli_errors, settings_from
from riverops.kafka.clients import make_consumer, ok
from riverops.kafka.topics import TOPIC_ROLES, TopicCatalogue
from riverops.schemas.codec import Codec
from riverops.schemas.errors import TopicError
from riverops.settings import Settings

__all__ = ["TailTopic", "resolve_topic", "json_safe", "render_record", "tail", "tail_command"]


@dataclass(frozen=True)
class TailTopic:
    """A topic to tail and the schema its values are written with."""

    name: str
    schema: str


def resolve_topic(catalogue: TopicCatalogue, given: str) -> TailTopic:
    """A catalogue role (``predictions``) or a catalogue topic's full name.

    >>> from riverops.settings import Settings
    >>> catalogue = TopicCatalogue.from_settings(Settings(topic_prefix="t."))
    >>> resolve_topic(catalogue, "predictions")
    TailTopic(name='t.predictions', schema='PredictionEvent')
    >>> resolve_topic(catalogue, "t.drift").schema
    'DriftEvent'
    """
    for spec in catalogue:
        if given in (spec.role, spec.name):
            return TailTopic(spec.name, spec.value_schema)
    names = ", ".join(spec.name for spec in catalogue)
    raise TopicError(
        f"{given!r} is neither a topic role ({', '.join(TOPIC_ROLES)}) nor a topic of the "
        f"catalogue ({names}); --topic-prefix names another catalogue"
    )


def json_safe(value: Any) -> Any:
    """``value`` with every part JSON can carry as it is (see the module's docstring)."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("latin-1")
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def _key(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")  # what riverops producers write
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def render_record(
    codec: Codec, schema: str, *, topic: str, partition: int, offset: int,
    timestamp_ms: int | None, key: bytes | None, value: bytes | None,
) -> dict[str, Any]:
    """One record as a JSON-ready dict: where it is, its key and its decoded value, or an
    ``error`` and the ``raw`` value when it does not decode (a tombstone's value is null)."""
    line: dict[str, Any] = {
        "topic": topic, "partition": partition, "offset": offset,
        "timestamp": (datetime.fromtimestamp(timestamp_ms / 1000, UTC).isoformat()
                      if timestamp_ms is not None and timestamp_ms >= 0 else None),
        "key": _key(key),
    }
    if value is None:
        line["value"] = None
        return line
    try:
        line["value"] = json_safe(codec.decode(schema, value))
    except Exception as exc:  # any failure to decode is this record's story, not the tail's end
        line["error"] = f"{type(exc).__name__}: {exc}"
        line["raw"] = json_safe(value)
    return line


def _message_line(codec: Codec, schema: str, message: Message) -> dict[str, Any]:
    kind, stamp = message.timestamp()
    key, value = message.key(), message.value()  # bytes: the consumer has no deserializers
    return render_record(
        codec, schema, topic=message.topic() or "", partition=message.partition() or 0,
        offset=message.offset() or 0, timestamp_ms=None if kind == TIMESTAMP_NOT_AVAILABLE else stamp,
        key=key if isinstance(key, bytes) else None, value=value if isinstance(value, bytes) else None,
    )


def _assign(consumer: Consumer, topic: str, *, from_beginning: bool, timeout: float) -> int:
    """Assign every partition of ``topic``; the partition count."""
    metadata = consumer.list_topics(topic, timeout=timeout).topics.get(topic)
    if metadata is None or metadata.error is not None or not metadata.partitions:
        why = metadata.error.str() if metadata is not None and metadata.error is not None else "no partitions"
        raise TopicError(f"cannot read {topic}: {why} (riverops topics create makes the catalogue)")
    start = OFFSET_BEGINNING if from_beginning else OFFSET_END
    consumer.assign([TopicPartition(topic, p, start) for p in sorted(metadata.partitions)])
    return len(metadata.partitions)


def tail(
    settings: Settings, topic: TailTopic, emit: Callable[[dict[str, Any]], None], *,
    from_beginning: bool = False, max_records: int | None = None, idle_seconds: float | None = None,
) -> int:
    """Hand every record of ``topic`` to ``emit`` until ``max_records`` were, or no record
    came for ``idle_seconds`` (else until interrupted); the count handed over."""
    codec = settings.codec()
    consumer = make_consumer(settings, f"riverops-tail-{uuid.uuid4().hex[:8]}")  # never joined
    count = 0
    try:
        _assign(consumer, topic.name, from_beginning=from_beginning, timeout=10.0)
        last = time.monotonic()
        while max_records is None or count < max_records:
            wait = 0.5 if idle_seconds is None else max(0.0, min(0.5, last + idle_seconds - time.monotonic()))
            messages = consumer.consume(100 if max_records is None else min(100, max_records - count), wait)
            for message in messages:
                error = message.error()
                # a group-less reader never uses its throwaway group, so needs no group ACL;
                # other consumer errors are logged (a refusal raises), records go out
                if error is not None and error.code() == KafkaError.GROUP_AUTHORIZATION_FAILED:
                    continue
                if not ok(message):
                    continue
                emit(_message_line(codec, topic.schema, message))
                count += 1
            if messages:
                last = time.monotonic()
            elif idle_seconds is not None and time.monotonic() - last >= idle_seconds:
                break
    finally:
        consumer.close()
    return count


def _resolve_or_fail(settings: Settings, given: str) -> TailTopic:
    """:func:`resolve_topic` for the command line: a bad name is a usage error."""
    try:
        return resolve_topic(TopicCatalogue.from_settings(settings), given)
    except TopicError as exc:
        raise click.BadParameter(str(exc), param_hint="TOPIC") from exc


@click.command("tail")
@click.argument("topic_name", metavar="TOPIC")
@click.option("--from-beginning", is_flag=True, help="Start at the oldest record (default: only new ones).")
@click.option("--max", "max_records", type=click.IntRange(min=1), metavar="N", help="Stop after N records.")
@click.option("--timeout", "idle_seconds", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              help="Stop after SECONDS without a record (default: follow until Ctrl-C).")
@click.pass_context
def tail_command(ctx: click.Context, topic_name: str, from_beginning: bool, max_records: int | None,
                 idle_seconds: float | None) -> None:
    """Print the records of TOPIC as JSON lines, decoded with the topic's schema.

    \b
    TOPIC is a role of the catalogue (features, predictions, labels, feedback, metrics,
    drift, retrain, model-registry, deadletter) or a catalogue topic's full name.
    Each line: topic, partition, offset, timestamp, key, and value (the decoded record), or
    error and raw for a record that does not decode. No consumer group is joined and no
    offset committed. Examples:
      riverops tail predictions
      riverops tail features --from-beginning --max 10 | jq .value.features
    """
    chosen = _resolve_or_fail(settings_from(ctx), topic_name)
    settings = broker_settings(ctx)

    def emit(line: dict[str, Any]) -> None:
        click.echo(json.dumps(line, ensure_ascii=False, allow_nan=False))

    try:
        with cli_errors():
            tail(settings, chosen, emit, from_beginning=from_beginning, max_records=max_records, idle_seconds=idle_seconds)
    except KeyboardInterrupt:
        return
