"""Join state larger than RAM: maps whose newest entries stay in a dict, the older on disk.

The joiner keeps two maps per partition: pending events (event id -> blob) and emitted
events (event id -> the stream time they were emitted at). Both are ordered by a time
that never goes back for a new key (the stream time the event was first seen, or was
emitted at), both are touched mostly while young, and both expire oldest first. A
:class:`SpillMap` keeps its newest ``memory_items`` entries in a dict, in that order, and
moves the older ones in batches (:meth:`SpillMap.spill`) into a SQLite table indexed by
that time, so an expiry reads a prefix of the index, never the whole table, and a label
that comes days late finds its features on disk. Without a file a SpillMap is a dict.

The two tiers never hold the same key, and every key on disk is older than every key in
memory (a key read or updated on disk stays there), so iterating the disk in index order
and then the dict is iterating the whole map in time order.

The file is scratch (:class:`SpillFile`): the join state's source of truth is the
changelog topic (under either guarantee), so the file is made
anew when a partition's core starts, deleted when it stops, and written without a
journal or fsync. SQLite was chosen by measurement over LMDB and RocksDB
(bench/join_store_engines.py, docs/reliability.md "Memory bounds"): it is in the
standard library, and its own index does what the other two need a second keyspace for.

Examples
--------
>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> file = SpillFile(folder / "p0.sqlite")
>>> done = SpillMap(TIMES, file=file, table="done", memory_items=2)
>>> for i in range(5):
...     done.put(f"e{i}", i)
>>> done.spill(), len(done), done.get("e0"), done.get("e4")
(3, 5, 0, 4)
>>> done.pop_older(2), [key for key, _ in done.items()]
([('e0', 0), ('e1', 1)], ['e2', 'e3', 'e4'])
>>> file.close(); (folder / "p0.sqlite").exists()
False
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

__all__ = ["SpillFile", "SpillMap", "Values", "BLOBS", "TIMES"]

V = TypeVar("V")
_MISSING = object()


@dataclass(frozen=True)
class Values(Generic[V]):
    """How a map's values sit in a table row: their order (the time) and the value column."""

    order: Callable[[V], int]
    to_column: Callable[[V], bytes | None]
    from_row: Callable[[int, bytes | None], V]


def _first_seen(blob: bytes) -> int:
    return int.from_bytes(blob[:8], "little", signed=True)  # the head of a pending blob (state.py)


BLOBS: Values[bytes] = Values(_first_seen, lambda blob: blob, lambda _order, blob: blob or b"")
"""Pending blobs: ordered by the first_seen time at their head, stored as they are."""
TIMES: Values[int] = Values(lambda time: time, lambda _time: None, lambda order, _blob: order)
"""Emitted-at times: the value is its own order; no value column."""


class SpillFile:
    """One scratch SQLite database (a partition's), in one long transaction.

    ``cache_kib`` bounds SQLite's page cache (its share of the process's memory). The
    transaction is committed at every :meth:`checkpoint` only to let SQLite reuse its
    pages; nothing here is meant to survive the process.
    """

    def __init__(self, path: Path, *, cache_kib: int = 8192) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)  # what a crashed owner left is stale
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._inode = path.stat().st_ino  # close() deletes this file, not a successor's
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "locking_mode=EXCLUSIVE",
                       "temp_store=MEMORY", f"cache_size=-{cache_kib}"):
            self.db.execute(f"PRAGMA {pragma}")
        self.db.execute("BEGIN")

    def table(self, name: str) -> None:
        self.db.execute(f"CREATE TABLE {name} (key TEXT PRIMARY KEY, time INTEGER NOT NULL, value BLOB)")
        self.db.execute(f"CREATE INDEX {name}_time ON {name} (time)")

    def checkpoint(self) -> None:
        self.db.execute("COMMIT")
        self.db.execute("BEGIN")

    def close(self) -> None:
        """Close and delete the file, unless the path now names another core's (a new
        owner of the partition in the same state directory made it meanwhile)."""
        self.db.close()
        try:
            if self.path.stat().st_ino == self._inode:
                self.path.unlink()
        except FileNotFoundError:
            pass


class SpillMap(Generic[V]):
    """A str -> V map in time order whose entries past the newest ``memory_items`` go to
    ``table`` of ``file`` at each :meth:`spill` (no file: everything stays in memory).

    Time order is kept by the callers' rule: a new key's time is never below an existing
    one's, and a value's time never changes (an update keeps it).
    """

    def __init__(self, values: Values[V], *, file: SpillFile | None = None, table: str = "",
                 memory_items: int = 0) -> None:
        if file is not None and memory_items < 1:
            raise ValueError(f"a spilling map keeps at least one entry in memory, got {memory_items}")
        self._values = values
        self._memory: dict[str, V] = {}
        self._on_disk = 0
        self._limit = memory_items
        self._db: sqlite3.Connection | None = None
        if file is not None:
            file.table(table)
            self._db = file.db
            self._get = f"SELECT time, value FROM {table} WHERE key = ?"
            self._update = f"UPDATE {table} SET value = ? WHERE key = ?"
            self._delete = f"DELETE FROM {table} WHERE key = ?"
            self._older = f"SELECT key, time, value FROM {table} WHERE time < ? ORDER BY time"
            self._drop_older = f"DELETE FROM {table} WHERE time < ?"
            self._all = f"SELECT key, time, value FROM {table} ORDER BY time"
            self._count = f"SELECT count(*) FROM {table}"
            self._bytes = f"SELECT sum(length(key) + coalesce(length(value), 0)) FROM {table}"
            self._insert = f"INSERT INTO {table} (key, time, value) VALUES (?, ?, ?)"
            self._upsert = (f"INSERT INTO {table} (key, time, value) VALUES (?, ?, ?) ON CONFLICT (key) "
                            "DO UPDATE SET time = excluded.time, value = excluded.value")

    # -- one entry -----------------------------------------------------------------------

    def get(self, key: str) -> V | None:
        value = self._memory.get(key)
        if value is None and self._on_disk:
            assert self._db is not None
            row = self._db.execute(self._get, (key,)).fetchone()
            if row is not None:
                return self._values.from_row(row[0], row[1])
        return value

    def put(self, key: str, value: V, *, new: bool = False) -> None:
        """Add ``key`` (its time at least every other's) or change its value (same time);
        ``new``: the caller knows the key is not in the map (no lookup on disk)."""
        memory = self._memory
        if self._on_disk and not new and key not in memory:
            assert self._db is not None
            if self._db.execute(self._update, (self._values.to_column(value), key)).rowcount:
                return
        memory[key] = value

    def discard(self, key: str) -> None:
        if self._memory.pop(key, _MISSING) is _MISSING and self._on_disk:
            assert self._db is not None
            self._on_disk -= self._db.execute(self._delete, (key,)).rowcount

    # -- the whole map -------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._memory) + self._on_disk

    @property
    def on_disk(self) -> int:
        """Entries in the file."""
        return self._on_disk

    def items(self) -> Iterator[tuple[str, V]]:
        """Every entry, oldest first (the disk's, then the memory's); do not change the map
        while iterating."""
        if self._on_disk:
            assert self._db is not None
            from_row = self._values.from_row
            for key, time, column in self._db.execute(self._all):
                yield key, from_row(time, column)
        yield from self._memory.items()

    def values(self) -> Iterator[V]:
        return (value for _, value in self.items())

    def pop_older(self, before: int) -> list[tuple[str, V]]:
        """Remove and return, oldest first, the entries whose time is below ``before``."""
        gone: list[tuple[str, V]] = []
        if self._on_disk:
            assert self._db is not None
            from_row = self._values.from_row
            gone = [(key, from_row(time, column)) for key, time, column in self._db.execute(self._older, (before,))]
            if gone:
                self._on_disk -= self._db.execute(self._drop_older, (before,)).rowcount
            if self._on_disk:  # the disk's entries are older than the memory's
                return gone
        order, memory = self._values.order, self._memory
        young: list[tuple[str, V]] = []
        for key, value in memory.items():
            if order(value) >= before:
                break
            young.append((key, value))
        for key, _ in young:
            del memory[key]
        return gone + young

    def spill(self) -> int:
        """Move the entries past the newest ``memory_items`` to the file, once there are
        a tenth more (batches, not one row per new event); the number moved."""
        memory, limit = self._memory, self._limit
        if self._db is None or len(memory) <= limit + limit // 10:
            return 0
        return self._spill(len(memory) - limit)

    def _spill(self, moving: int) -> int:
        memory = self._memory
        assert self._db is not None
        keys = [key for key, _ in zip(memory, range(moving), strict=False)]
        order, to_column = self._values.order, self._values.to_column
        self._db.executemany(self._insert, ((key, order(memory[key]), to_column(memory[key])) for key in keys))
        for key in keys:
            del memory[key]
        self._on_disk += moving
        return moving

    def absorb(self, entries: Iterable[tuple[str, V | None]]) -> None:
        """Apply a restore's entries in log order (None: the key is gone), for a map that
        holds no key yet in memory; with a file they go straight to disk (any order: the
        index sorts them), without one :meth:`sort` after the last call puts them in order."""
        if self._db is None:
            memory = self._memory
            for key, value in entries:
                if value is None:
                    memory.pop(key, None)
                else:
                    memory.pop(key, None)
                    memory[key] = value
            return
        assert not self._memory, "absorb() restores a map before it takes new entries"
        latest = dict(entries)  # the last entry of each key wins, as in the log
        order, to_column = self._values.order, self._values.to_column
        self._db.executemany(self._upsert, ((key, order(value), to_column(value))
                                            for key, value in latest.items() if value is not None))
        self._db.executemany(self._delete, ((key,) for key, value in latest.items() if value is None))
        self._on_disk = self._db.execute(self._count).fetchone()[0]

    def load(self, ordered: Mapping[str, V]) -> None:
        """Take ``ordered`` (oldest first) as the entries of this empty map; with a file,
        the entries past the newest ``memory_items`` go to disk at once."""
        assert not self, "load() fills an empty map"
        self._memory = ordered if isinstance(ordered, dict) else dict(ordered)
        if self._db is not None and len(self._memory) > self._limit:
            self._spill(len(self._memory) - self._limit)

    def stored_bytes(self) -> int:
        """The bytes of the keys and value columns held, in memory and on disk."""
        to_column = self._values.to_column
        total = sum(len(key) + len(to_column(value) or b"") for key, value in self._memory.items())
        if self._on_disk:
            assert self._db is not None
            total += self._db.execute(self._bytes).fetchone()[0] or 0
        return total

    def sort(self) -> None:
        """Put the memory's entries in time order (after :meth:`absorb` without a file)."""
        order = self._values.order
        self._memory = dict(sorted(self._memory.items(), key=lambda item: order(item[1])))

    def as_dict(self) -> Mapping[str, V]:
        """The whole map, oldest first: the dict itself while nothing is on disk, else a
        copy of everything (a whole snapshot's: it costs the state)."""
        return dict(self.items()) if self._on_disk else self._memory
