"""Recent event ids, bounded by count: was this (group, id) among the last N taken?

Kafka re-delivers the uncommitted tail of a partition after a restart or a rebalance, so a
role that must count each event once remembers the ids it took, as far back as a
re-delivery reaches (one commit interval, one snapshot period), not for as long as the
events live. :class:`RecentIds` keeps the last ``capacity`` ids as 64-bit hashes in a
table allocated once: an open-addressing table at most half full (linear probing, entries
moved back on removal, so no tombstones) and a ring of the same hashes in arrival order,
whose oldest entry is forgotten when a new one comes in. About 33 bytes per id at the
default 200,000 (4 MiB of table, 1.6 MB of ring, 0.8 MB of group codes), whatever the ids
look like, against ~270 bytes for an ``OrderedDict`` of (model, uuid) string tuples.

The hash is BLAKE2b with an 8-byte digest of the length-prefixed pair: the same in every
process, so a core that holds one pickles into a checkpoint and resumes elsewhere (about
1 us per id, where Python's own salted ``hash`` takes 0.15 us but changes with the
process). Two ids share a hash with probability about ``len / 2**64`` per lookup (1e-14
at 200,000 ids): such an id would be taken for a repeat and dropped.

Examples
--------
>>> ids = RecentIds(2)
>>> ids.add("fraud", "e1"), ids.add("fraud", "e1"), ("fraud", "e1") in ids
(True, False, True)
>>> ids.add("fraud", "e2"), ids.add("fraud", "e3")  # e1, the oldest, is forgotten
(True, True)
>>> ("fraud", "e1") in ids, len(ids)
(False, 2)
>>> ids.forget({"fraud"}), len(ids)
(2, 0)
"""

from __future__ import annotations

from array import array
from collections.abc import Collection, Iterator
from hashlib import blake2b

from riverops.schemas.errors import ConfigError

__all__ = ["RecentIds", "DEFAULT_CAPACITY"]

DEFAULT_CAPACITY = 200_000


def _hash(group: str, key: str) -> int:
    """A non-zero 64-bit hash of (group, key), the same in every process; 0 marks an empty
    table slot."""
    digest = blake2b(f"{len(group)}:{group}{key}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little") or 1


class RecentIds:
    """The last ``capacity`` distinct (group, id) pairs added, as compact hashes.

    ``group`` is what :meth:`forget` drops by (the model name: a monitor forgets the models
    of a partition it lost); ``key`` is the event id.
    """

    __slots__ = ("capacity", "_mask", "_table", "_ring", "_codes", "_head", "_size", "_groups", "_last")

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ConfigError(f"RecentIds capacity must be positive, got {capacity}")
        self.capacity = capacity
        slots = 1 << max(3, (2 * capacity - 1).bit_length())  # a power of two >= 2 x capacity
        self._mask = slots - 1
        self._table = array("Q", bytes(8 * slots))
        self._ring = array("Q", bytes(8 * capacity))  # hashes, oldest at (head - size)
        self._codes = array("I", bytes(4 * capacity))  # each ring entry's group code
        self._head = 0  # where the next entry goes
        self._size = 0
        self._groups: dict[str, int] = {}
        self._last: tuple[str, str, int] = ("", "", 0)  # the last pair hashed: a lookup, then its add

    def _hashed(self, group: str, key: str) -> int:
        last = self._last
        if last[1] == key and last[0] == group:
            return last[2]
        h = _hash(group, key)
        self._last = (group, key, h)
        return h

    def __len__(self) -> int:
        return self._size

    def __contains__(self, item: object) -> bool:
        """``(group, key) in ids``: whether the pair is among the last ``capacity`` added."""
        if not (isinstance(item, tuple) and len(item) == 2):
            return False
        group, key = item
        if not (isinstance(group, str) and isinstance(key, str)):
            return False
        return self._probe(self._hashed(group, key))[1]

    def _probe(self, h: int) -> tuple[int, bool]:
        """Linear probing for ``h``: (its slot, True), or (the empty slot where it would
        go, False)."""
        table, mask = self._table, self._mask
        i = h & mask
        while (v := table[i]) != 0:
            if v == h:
                return i, True
            i = (i + 1) & mask
        return i, False

    def add(self, group: str, key: str) -> bool:
        """Remember (group, key); True when it is new, False when it is a recent repeat
        (which changes nothing: a repeat does not make an id younger)."""
        h = self._hashed(group, key)
        i, found = self._probe(h)
        if found:
            return False
        if self._size == self.capacity:
            self._remove(self._ring[self._head])  # the oldest: moves entries, probe again
            self._size -= 1
            i, _ = self._probe(h)
        self._table[i] = h
        code = self._groups.get(group)
        if code is None:
            code = self._groups[group] = len(self._groups)
        self._ring[self._head] = h
        self._codes[self._head] = code
        self._head = (self._head + 1) % self.capacity
        self._size += 1
        return True

    def forget(self, groups: Collection[str]) -> int:
        """Drop every id of ``groups``; how many were dropped. Rebuilds the table (about a
        second per million ids kept): for rebalances, not for every event."""
        codes = {self._groups[g] for g in groups if g in self._groups}
        if not codes or not self._size:
            return 0
        kept = [(h, c) for h, c in self._entries() if c not in codes]
        dropped = self._size - len(kept)
        self._table = array("Q", bytes(8 * len(self._table)))
        self._head = self._size = 0
        for h, c in kept:
            i, _ = self._probe(h)
            self._table[i] = h
            self._ring[self._size], self._codes[self._size] = h, c
            self._size += 1
        self._head = self._size % self.capacity
        return dropped

    @property
    def nbytes(self) -> int:
        """Bytes held by the table, the ring and the group codes (allocated up front)."""
        return sum(a.itemsize * len(a) for a in (self._table, self._ring, self._codes))

    def _entries(self) -> Iterator[tuple[int, int]]:
        """(hash, group code) of every entry, oldest first."""
        start = (self._head - self._size) % self.capacity
        for n in range(self._size):
            j = (start + n) % self.capacity
            yield self._ring[j], self._codes[j]

    def _remove(self, h: int) -> None:
        """Take ``h`` (present) out of the table, moving back the entries after it that
        would no longer be found (Knuth's algorithm R for linear probing)."""
        table, mask = self._table, self._mask
        i, _ = self._probe(h)
        j = i
        while True:
            j = (j + 1) & mask
            v = table[j]
            if v == 0:
                break
            home = v & mask
            # v stays when its home slot lies cyclically in (i, j]: the hole does not cut its probe
            if (home > i and home <= j) if i <= j else (home > i or home <= j):
                continue
            table[i] = v
            i = j
        table[i] = 0
