"""Dead-letter records: nothing a processor cannot handle is dropped silently.

A dead letter carries the raw record, cut to :data:`~riverops.kafka.limits.MAX_DEAD_VALUE_BYTES`
(key to :data:`~riverops.kafka.limits.MAX_KEY_BYTES`) so that it always fits the broker's
message limit: a dead letter that cannot be produced would stop the worker on every
restart (see :mod:`riverops.kafka.limits`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from riverops.kafka.limits import MAX_DEAD_VALUE_BYTES, MAX_KEY_BYTES, MAX_REASON_CHARS
from riverops.schemas.errors import DecodeError, RiveropsError

__all__ = ["SourceRecord", "Origin", "dead_letter", "bounded"]


class SourceRecord(Protocol):
    """What a dead letter needs of the record that failed (a confluent_kafka Message fits)."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> str | bytes | None: ...
    def value(self) -> str | bytes | None: ...


@dataclass(frozen=True)
class Origin:
    """A record's origin when the message itself is gone (a role that keeps only the
    decoded record and its position): a dead letter without the raw value."""

    source: tuple[str, int, int]
    key_: str | bytes | None = None
    value_: bytes | None = None

    def topic(self) -> str | None:
        return self.source[0]

    def partition(self) -> int | None:
        return self.source[1]

    def offset(self) -> int | None:
        return self.source[2]

    def key(self) -> str | bytes | None:
        return self.key_

    def value(self) -> str | bytes | None:
        return self.value_


def _as_bytes(data: str | bytes | None) -> bytes | None:
    return data.encode() if isinstance(data, str) else data


def bounded(key: bytes | None, value: bytes | None, reason: str) -> tuple[bytes | None, bytes | None, str]:
    """Key, value and reason cut to the dead-letter limits; the reason tells what was cut.

    >>> key, value, reason = bounded(b"k", b"x" * (MAX_DEAD_VALUE_BYTES + 5), "bad")
    >>> len(value), reason
    (524288, 'bad [value cut to 524288 of 524293 bytes]')
    """
    notes = []
    if value is not None and len(value) > MAX_DEAD_VALUE_BYTES:
        notes.append(f"value cut to {MAX_DEAD_VALUE_BYTES} of {len(value)} bytes")
        value = value[:MAX_DEAD_VALUE_BYTES]
    if key is not None and len(key) > MAX_KEY_BYTES:
        notes.append(f"key cut to {MAX_KEY_BYTES} of {len(key)} bytes")
        key = key[:MAX_KEY_BYTES]
    if len(reason) > MAX_REASON_CHARS:
        reason = reason[:MAX_REASON_CHARS] + "..."
    if notes:
        reason = f"{reason} [{'; '.join(notes)}]"
    return key, value, reason


def dead_letter(source: SourceRecord, error: RiveropsError, *, processor: str) -> dict[str, Any]:
    """The DeadLetter record for ``source`` failing with ``error`` in ``processor``."""
    value = error.raw if isinstance(error, DecodeError) and error.raw else _as_bytes(source.value())
    key, value, reason = bounded(_as_bytes(source.key()), value, str(error))
    return {
        "source_topic": source.topic() or "",
        "source_partition": source.partition() or 0,
        "source_offset": source.offset() or 0,
        "key": key,
        "value": value,
        "error_type": type(error).__name__,
        "reason": reason,
        "processor": processor,
        "failed_at": datetime.now(UTC),
    }
