"""A pure time-ordered merge of several topic-partitions, for the ``online`` worker.

Kafka orders records within a partition only; the online variant must see features and
labels in *time* order, or its predict-then-learn loop is not River's. :class:`TimeOrderMerge`
buffers the records of every registered partition and releases them in one global order,
the same whatever the interleaving of the partitions' arrivals:

1. by timestamp (a partition's timestamps are clamped to its running maximum, so a record
   stamped earlier than its predecessor counts as stamped with the predecessor's time:
   the order then depends on the partition's own order only);
2. at equal timestamps, labels before features, except that a label follows the features
   of its own event (same key) when those carry the same timestamp;
3. then by (topic, partition) and arrival order within the partition.

Why this tie rule: ``river.stream.simulate_qa`` reveals, before the question of sample
``i`` at time ``t_i``, every answer whose expiry time is ``<= t_i`` (``if t_expire > t:
break``), so an answer stamped ``T`` precedes a question stamped ``T``; but an answer is
queued only after its own question was asked, so with a zero delay the label of ``i``
(stamped ``t_i``) comes right after the features of ``i``, before those of ``i + 1``.
Features of sample ``i`` at ``t = i`` and its label at ``t = i + k`` thus come out in
exactly ``progressive_val_score(..., delay=k)``'s order, for ``k = 0`` too. Labels at one
timestamp keep (partition, arrival) order: River's FIFO when the labels are produced in
event order to one partition.

Release rule: the watermark is the smallest last timestamp over the registered partitions;
every record stamped strictly below it is released. A partition can still send a record at
exactly the watermark, and that record may sort before a buffered one at the same time (a
label before features, a lower partition), so ``<=`` would not be safe. A partition that
has sent nothing holds everything back; :meth:`unregister` a revoked or idle partition, or
:meth:`drain` everything at the end of input or when the caller decides to stop waiting
(e.g. a partition idle for a timeout). Records stamped below what was already released
(after a drain, or from a partition registered late) go out with the next release that
covers them and are counted ``late``: the order guarantee holds for the others only.

Examples
--------
>>> merge: TimeOrderMerge[str] = TimeOrderMerge([("labels", 0), ("features", 0)])
>>> merge.push(("features", 0), 5, "features", "F5", key="e5")
>>> merge.push(("features", 0), 6, "features", "F6", key="e6")
>>> merge.release()  # the labels partition has said nothing yet
[]
>>> merge.push(("labels", 0), 5, "label", "L5", key="e5")
>>> merge.push(("labels", 0), 6, "label", "L1", key="e1")
>>> merge.release(), merge.watermark
(['F5', 'L5'], 6)
>>> merge.drain()
['L1', 'F6']
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from typing import Generic, Literal, TypeVar

__all__ = ["Kind", "Partition", "TimeOrderMerge", "TIE_RANK"]

Kind = Literal["features", "label"]
Partition = tuple[str, int]
"""(topic, partition)"""

TIE_RANK: dict[Kind, int] = {"label": 0, "features": 1}
"""Order at equal timestamps: River reveals answers due at ``t`` before the question at ``t``."""

T = TypeVar("T")

# heap entry: timestamp, tie rank, topic, partition, arrival number, key, item; the first
# five are unique per record, so items are never compared
_Entry = tuple[int, int, str, int, int, "str | None", T]


class TimeOrderMerge(Generic[T]):
    """Buffers records of several partitions and releases them in global time order.

    ``partitions`` are registered up front (the consumer's assignment): each holds the
    watermark back until it has sent a record. Pushing to an unknown partition registers it.
    Timestamps are integers (Kafka's epoch milliseconds). Not thread-safe.
    """

    def __init__(self, partitions: Iterable[Partition] = ()) -> None:
        self._last: dict[Partition, int | None] = {}
        self._count: dict[Partition, int] = {}
        self._heap: list[_Entry[T]] = []
        self._frontier: int | None = None  # everything stamped below it was released
        self.late = 0
        """Records stamped below what was already released (their order is best effort)."""
        self.clamped = 0
        """Records stamped earlier than their partition's predecessor, moved up to its time."""
        for partition in partitions:
            self.register(partition)

    def register(self, partition: Partition) -> None:
        """Wait for ``partition``: nothing is released until it sent a record (or left)."""
        self._last.setdefault(partition, None)
        self._count.setdefault(partition, 0)

    def unregister(self, partition: Partition) -> None:
        """Stop waiting for ``partition`` (revoked, or idle for too long); its buffered
        records stay and are released in order."""
        self._last.pop(partition, None)

    @property
    def partitions(self) -> list[Partition]:
        """The partitions the watermark waits for, sorted."""
        return sorted(self._last)

    @property
    def watermark(self) -> int | None:
        """The smallest last timestamp over the registered partitions; ``None`` while one
        has sent nothing or none is registered."""
        if not self._last:
            return None
        lasts = self._last.values()
        if any(last is None for last in lasts):
            return None
        return min(last for last in lasts if last is not None)

    @property
    def pending(self) -> int:
        """Records buffered, not yet released."""
        return len(self._heap)

    def push(
        self, partition: Partition, timestamp: int, kind: Kind, item: T, *, key: str | None = None
    ) -> None:
        """Buffer one record of ``partition``, in that partition's order; ``key`` is the
        event id (the Kafka key), which places a label right after its own features."""
        last = self._last.get(partition)
        if partition not in self._last:
            self.register(partition)
        if last is not None and timestamp < last:
            self.clamped += 1
            timestamp = last
        self._last[partition] = timestamp
        if self._frontier is not None and timestamp < self._frontier:
            self.late += 1
        seq = self._count[partition]
        self._count[partition] = seq + 1
        heapq.heappush(
            self._heap, (timestamp, TIE_RANK[kind], partition[0], partition[1], seq, key, item)
        )

    def release(self) -> list[T]:
        """The buffered records stamped below the watermark, in global order."""
        watermark = self.watermark
        if watermark is None:
            return []
        out = self._pop_below(watermark)
        if self._frontier is None or watermark > self._frontier:
            self._frontier = watermark
        return out

    def drain(self) -> list[T]:
        """Every buffered record, in global order (end of input, or stop waiting)."""
        if not self._heap:
            return []
        top = max(entry[0] for entry in self._heap)
        out = self._pop_below(top + 1)
        if self._frontier is None or top + 1 > self._frontier:
            self._frontier = top + 1
        return out

    def _pop_below(self, bound: int) -> list[T]:
        heap, out = self._heap, []
        while heap and heap[0][0] < bound:
            group = [heapq.heappop(heap)]
            while heap and heap[0][0] == group[0][0]:
                group.append(heapq.heappop(heap))
            out.extend(_tie_order(group))
        return out


def _tie_order(group: list[_Entry[T]]) -> list[T]:
    """One timestamp's records (heap order: labels first): a label whose own features are
    in the group moves to right after them."""
    features = {entry[5] for entry in group if entry[1] == TIE_RANK["features"]}
    features.discard(None)
    if not features:
        return [entry[6] for entry in group]
    own: dict[str | None, list[T]] = {}
    out: list[T] = []
    for _, rank, _, _, _, key, item in group:
        if rank == TIE_RANK["label"]:
            if key in features:
                own.setdefault(key, []).append(item)
            else:
                out.append(item)
        else:
            out.append(item)
            out.extend(own.pop(key, ()))
    return out
