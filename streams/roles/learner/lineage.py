"""Training-data lineage: the feedback offsets a model learned from, as spans.

Per (topic, partition), one span from the smallest offset learned to the largest plus
one. The feedback topic is keyed by model, so a span may also hold other models' records
and skipped ones: replaying the span for this model with the same dedupe reproduces the
training data. A snapshot's lineage holds the spans since its learner started.

Examples
--------
>>> spans = OffsetSpans()
>>> for source in [("feedback", 0, 12), ("feedback", 1, 3), ("feedback", 0, 10)]:
...     spans.cover(source)
>>> for span in spans.ranges():
...     print(span)
{'topic': 'feedback', 'partition': 0, 'start': 10, 'end': 13}
{'topic': 'feedback', 'partition': 1, 'start': 3, 'end': 4}
"""

from __future__ import annotations

from typing import Any

from riverops.kafka.topics import Source

__all__ = ["Source", "OffsetSpans"]



class OffsetSpans:
    """The spans of offsets covered so far, per (topic, partition)."""

    def __init__(self) -> None:
        self._spans: dict[tuple[str, int], list[int]] = {}  # (topic, partition) -> [start, end)

    def cover(self, source: Source) -> None:
        """Widen the span of ``source``'s partition to hold its offset."""
        topic, partition, offset = source
        span = self._spans.get((topic, partition))
        if span is None:
            self._spans[topic, partition] = [offset, offset + 1]
        else:
            span[0], span[1] = min(span[0], offset), max(span[1], offset + 1)

    def ranges(self) -> list[dict[str, Any]]:
        """The spans as OffsetRange dicts (``topic``, ``partition``, ``start``, ``end``), sorted."""
        return [
            {"topic": topic, "partition": partition, "start": start, "end": end}
            for (topic, partition), (start, end) in sorted(self._spans.items())
        ]
