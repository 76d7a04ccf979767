"""Dead-letter records: nothing a processor cannot handle is dropped silently."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol

from schemas.errors import DecodeError, RiveropsError

__all__ = ["SourceRecord", "dead_letter"]


class SourceRecord(Protocol):
    """What a dead letter needs of the record that failed (a confluent_kafka Message fits)."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> str | bytes | None: ...
    def value(self) -> str | bytes | None: ...


def _as_bytes(data: str | bytes | None) -> bytes | None:
    return data.encode() if isinstance(data, str) else data


def dead_letter(source: SourceRecord, error: RiveropsError, *, processor: str) -> dict[str, Any]:
    """The DeadLetter record for ``source`` failing with ``error`` in ``processor``."""
    value = error.raw if isinstance(error, DecodeError) and error.raw else _as_bytes(source.value())
    return {
        "source_topic": source.topic() or "",
        "source_partition": source.partition() or 0,
        "source_offset": source.offset() or 0,
        "key": _as_bytes(source.key()),
        "value": value,
        "error_type": type(error).__name__,
        "reason": str(error),
        "processor": processor,
        "failed_at": datetime.now(UTC),
    }
