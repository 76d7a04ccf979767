"""Which embedded key-value store should hold the joiner's pending events on disk (issue 18).

Each engine holds N pending events (a 36-character uuid4 key, a 450-byte random blob and
an 8-byte first_seen time that never goes back for a new key; four events share each
millisecond) and does what the joiner's disk tier does: inserts in batches of 5,000, point
lookups that hit and that miss (most lookups for a new event miss), updates of a value
(its time unchanged), deletes by key, and expiry of the oldest 10% in steps of 5,000,
oldest first, each expired value read (the joiner counts what expired) and without a scan
of the whole store. SQLite finds the oldest through an index on its time column; LMDB and
RocksDB through a second keyspace (8-byte big-endian time + key) kept in the same
transaction or write batch. Nothing needs to survive the process (the file is rebuilt
from the changelog), so each engine runs with its fastest single-process settings: no
journal, WAL or fsync, one transaction committed per batch of 5,000 operations.

Every engine run is its own child process, so the peak RSS is that engine's (about 45 MB
of it is the interpreter and the bench's own indexes and batch, measured without a store;
importing rocksdict adds 8 MB). Only the engine calls are timed: keys and blobs are made
before each batch's clock starts. Lookups, updates and deletes pick 100,000 distinct
entries uniformly at random (a cold read for an engine whose cache is smaller than the
data). Bytes on disk are the allocated blocks of the engine's files after the inserts.

    .venv/bin/python -m bench.join_store_engines                     # 100k and 1M, 2 runs
    .venv/bin/python -m bench.join_store_engines --entries 5000000 --engines sqlite
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

Row = tuple[str, int, bytes]  # key, first_seen, value

BATCH = 5_000
OPS = 100_000  # lookups, updates and deletes per phase
VALUE_BYTES = 450
EVENTS_PER_MS = 4
T0 = 1_767_225_600_000  # 2026-01-01, ms
CACHE_BYTES = 16 << 20  # each engine's own cache, where it has one
RESULTS = Path(__file__).parent / "results" / "join_store_engines.md"


class Store(Protocol):
    """The joiner's disk tier, as each engine does it."""

    def insert(self, rows: list[Row]) -> None: ...
    def get(self, key: str) -> bytes | None: ...
    def update(self, key: str, value: bytes) -> bool: ...
    def delete(self, key: str) -> bool: ...
    def pop_older(self, before: int) -> list[tuple[str, bytes]]: ...
    def commit(self) -> None: ...
    def settle(self) -> None: ...  # everything written is in the files (for du)
    def close(self) -> None: ...


class SQLiteStore:
    """A table keyed by the event id with an index on first_seen (streams/roles/joiner/spill.py's
    layout); ``without_rowid`` stores rows in the key's b-tree instead of beside it."""

    def __init__(self, folder: Path, *, without_rowid: bool = False) -> None:
        import sqlite3

        self.db = sqlite3.connect(folder / "pending.sqlite", isolation_level=None)
        for pragma in ("journal_mode=OFF", "synchronous=OFF", "locking_mode=EXCLUSIVE",
                       "temp_store=MEMORY", f"cache_size=-{CACHE_BYTES >> 10}"):
            self.db.execute(f"PRAGMA {pragma}")
        self.db.execute("CREATE TABLE pending (key TEXT PRIMARY KEY, time INTEGER NOT NULL,"
                        f" value BLOB){' WITHOUT ROWID' if without_rowid else ''}")
        self.db.execute("CREATE INDEX pending_time ON pending (time)")
        self.db.execute("BEGIN")

    def insert(self, rows: list[Row]) -> None:
        self.db.executemany("INSERT INTO pending (key, time, value) VALUES (?, ?, ?)", rows)

    def get(self, key: str) -> bytes | None:
        row = self.db.execute("SELECT value FROM pending WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def update(self, key: str, value: bytes) -> bool:
        return self.db.execute("UPDATE pending SET value = ? WHERE key = ?",
                               (value, key)).rowcount == 1

    def delete(self, key: str) -> bool:
        return self.db.execute("DELETE FROM pending WHERE key = ?", (key,)).rowcount == 1

    def pop_older(self, before: int) -> list[tuple[str, bytes]]:
        gone = self.db.execute("SELECT key, value FROM pending WHERE time < ? ORDER BY time",
                               (before,)).fetchall()
        self.db.execute("DELETE FROM pending WHERE time < ?", (before,))
        return gone

    def commit(self) -> None:
        self.db.execute("COMMIT")
        self.db.execute("BEGIN")

    def settle(self) -> None:
        self.commit()

    def close(self) -> None:
        self.db.execute("COMMIT")
        self.db.close()


def _time_key(first_seen: int, key: bytes) -> bytes:
    """The secondary index's key: big-endian time first, so byte order is time order."""
    return first_seen.to_bytes(8, "big") + key


class LMDBStore:
    """Two LMDB databases in one environment: key -> time + value, and time + key -> ''."""

    def __init__(self, folder: Path) -> None:
        import lmdb

        # writemap: 1M entries, 2026-12-02, with it / without: inserts 5.8 / 8.6 µs, updates
        # 7.3 / 10.1, deletes 9.7 / 14.8, expiry 6.1 / 10.1, lookups the same
        self.env = lmdb.open(str(folder), map_size=1 << 40, max_dbs=2, sync=False,
                             metasync=False, writemap=True, lock=False, readahead=False)
        self.pending = self.env.open_db(b"pending")
        self.by_time = self.env.open_db(b"by_time")
        self.txn = self.env.begin(write=True)

    def insert(self, rows: list[Row]) -> None:
        put = self.txn.put
        for key, first_seen, value in rows:
            raw = key.encode()
            put(raw, first_seen.to_bytes(8, "big") + value, db=self.pending)
            put(_time_key(first_seen, raw), b"", db=self.by_time)

    def get(self, key: str) -> bytes | None:
        stored = self.txn.get(key.encode(), db=self.pending)
        return None if stored is None else stored[8:]

    def update(self, key: str, value: bytes) -> bool:
        raw = key.encode()
        stored = self.txn.get(raw, db=self.pending)
        if stored is None:
            return False
        return bool(self.txn.put(raw, stored[:8] + value, db=self.pending))

    def delete(self, key: str) -> bool:
        raw = key.encode()
        stored = self.txn.pop(raw, db=self.pending)
        if stored is None:
            return False
        return bool(self.txn.delete(stored[:8] + raw, db=self.by_time))

    def pop_older(self, before: int) -> list[tuple[str, bytes]]:
        gone: list[tuple[str, bytes]] = []
        bound = before.to_bytes(8, "big")
        cursor = self.txn.cursor(db=self.by_time)
        pop = self.txn.pop
        cursor.first()
        while (time_key := cursor.key()) and time_key[:8] < bound:  # b"": past the end
            raw = time_key[8:]
            gone.append((raw.decode(), pop(raw, db=self.pending)[8:]))
            cursor.delete()  # and on to the next entry
        return gone

    def commit(self) -> None:
        self.txn.commit()
        self.txn = self.env.begin(write=True)

    def settle(self) -> None:
        self.commit()
        self.env.sync(True)

    def close(self) -> None:
        self.txn.commit()
        self.env.close()


class RocksDBStore:
    """Two column families (key -> time + value, time + key -> ''), each with a 16 MB
    memtable and a 16 MB block cache with a bloom filter (so a miss rarely reads a block),
    written without a WAL."""

    def __init__(self, folder: Path) -> None:
        import rocksdict as rd

        def options() -> rd.Options:
            table = rd.BlockBasedOptions()
            table.set_block_cache(rd.Cache(CACHE_BYTES))
            table.set_bloom_filter(10, False)
            made = rd.Options(raw_mode=True)
            made.set_block_based_table_factory(table)
            made.set_write_buffer_size(CACHE_BYTES)
            return made

        main = options()
        main.create_if_missing(True)
        main.create_missing_column_families(True)
        main.set_max_background_jobs(2)
        self.db = rd.Rdict(str(folder / "rocks"), main, column_families={"by_time": options()})
        writes = rd.WriteOptions()
        writes.disable_wal = True
        self.db.set_write_options(writes)
        self.by_time = self.db.get_column_family("by_time")
        self.by_time_handle = self.db.get_column_family_handle("by_time")
        self.rd = rd
        self.expired_to = b""  # the last expiry's bound: the keys below it are tombstones

    def insert(self, rows: list[Row]) -> None:
        batch = self.rd.WriteBatch(raw_mode=True)
        for key, first_seen, value in rows:
            raw = key.encode()
            batch.put(raw, first_seen.to_bytes(8, "big") + value)
            batch.put(_time_key(first_seen, raw), b"", self.by_time_handle)
        self.db.write(batch)

    def get(self, key: str) -> bytes | None:
        stored = self.db.get(key.encode())
        return None if stored is None else stored[8:]

    def update(self, key: str, value: bytes) -> bool:
        raw = key.encode()
        stored = self.db.get(raw)
        if stored is None:
            return False
        self.db.put(raw, stored[:8] + value)
        return True

    def delete(self, key: str) -> bool:
        raw = key.encode()
        stored = self.db.get(raw)
        if stored is None:
            return False
        batch = self.rd.WriteBatch(raw_mode=True)
        batch.delete(raw)
        batch.delete(stored[:8] + raw, self.by_time_handle)
        self.db.write(batch)
        return True

    def pop_older(self, before: int) -> list[tuple[str, bytes]]:
        bound = before.to_bytes(8, "big")
        keys: list[bytes] = []
        cursor = self.by_time.iter()
        cursor.seek(self.expired_to)  # not seek_to_first: that would step over every tombstone
        while cursor.valid() and cursor.key() < bound:
            keys.append(cursor.key()[8:])
            cursor.next()
        del cursor
        if not keys:
            return []
        values = self.db.get(keys)
        batch = self.rd.WriteBatch(raw_mode=True)
        for raw in keys:
            batch.delete(raw)
        batch.delete_range(self.expired_to, bound, self.by_time_handle)
        self.db.write(batch)
        self.expired_to = bound
        return [(raw.decode(), stored[8:]) for raw, stored in zip(keys, values, strict=True)]

    def commit(self) -> None:
        pass  # every write above is already its own batch: there is no transaction to end

    def settle(self) -> None:
        self.db.flush()
        self.by_time.flush()

    def close(self) -> None:
        self.db.close()


ENGINES: dict[str, Callable[[Path], Store]] = {
    "sqlite": SQLiteStore,
    "sqlite-without-rowid": lambda folder: SQLiteStore(folder, without_rowid=True),
    "lmdb": LMDBStore,
    "rocksdb": RocksDBStore,
}


def key_of(index: int, salt: bytes = b"pending") -> str:
    """Entry ``index``'s uuid4 string, the same in every process (another salt: a miss)."""
    digest = hashlib.blake2b(index.to_bytes(8, "big"), digest_size=16, key=salt).digest()
    return str(uuid.UUID(bytes=digest, version=4))


def first_seen_of(index: int) -> int:
    return T0 + index // EVENTS_PER_MS


def _batches(indexes: list[int]) -> Iterator[list[int]]:
    for start in range(0, len(indexes), BATCH):
        yield indexes[start:start + BATCH]


def _disk_bytes(folder: Path) -> int:
    """What du counts: allocated blocks, not apparent sizes (LMDB's map is a sparse file)."""
    return sum(path.stat().st_blocks * 512 for path in folder.rglob("*") if path.is_file())


def _anon_rss_kib() -> int:
    """The process's own memory now, without file pages it maps (LMDB's whole store is one)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("RssAnon:"))


def child(engine: str, entries: int, folder: Path) -> dict[str, Any]:
    """One engine's whole run in this (fresh) process: µs per operation, bytes, peak RSS."""
    rng = random.Random(entries)
    blobs = random.Random(1)
    store = ENGINES[engine](folder)
    seconds: dict[str, float] = dict.fromkeys(
        ("insert", "hit", "miss", "update", "delete", "expire"), 0.0)

    for start in range(0, entries, BATCH):
        rows = [(key_of(i), first_seen_of(i), blobs.randbytes(VALUE_BYTES))
                for i in range(start, min(start + BATCH, entries))]
        began = time.perf_counter()
        store.insert(rows)
        store.commit()
        seconds["insert"] += time.perf_counter() - began
    store.settle()
    disk = _disk_bytes(folder)

    ops = min(OPS, entries // 4)
    expired = entries // 10  # the oldest 10%, left alone by the deletes below
    picked: dict[int, None] = {}  # not random.sample: below ~1M it copies the whole range
    while len(picked) < 2 * ops:  # (30 MB of ints in the RSS of a 1M run, none at 5M)
        picked[rng.randrange(expired, entries)] = None
    chosen = list(picked)
    hits, deletes = chosen[:ops], chosen[ops:]
    for phase, indexes in (("hit", hits), ("miss", list(range(ops))), ("update", hits),
                           ("delete", deletes)):
        found = 0
        for batch in _batches(indexes):
            keys = [key_of(i, b"miss" if phase == "miss" else b"pending") for i in batch]
            values = [blobs.randbytes(VALUE_BYTES) for _ in batch] if phase == "update" else []
            began = time.perf_counter()
            if phase in ("hit", "miss"):
                get = store.get
                found += sum(get(key) is not None for key in keys)
            elif phase == "update":
                update = store.update
                found += sum(update(key, value) for key, value in zip(keys, values, strict=True))
            else:
                delete = store.delete
                found += sum(delete(key) for key in keys)
            store.commit()
            seconds[phase] += time.perf_counter() - began
        assert found == (0 if phase == "miss" else len(indexes)), (engine, phase, found)

    gone, step = 0, min(BATCH, expired)
    for end in range(step, expired + 1, step):
        began = time.perf_counter()
        gone += len(store.pop_older(first_seen_of(end)))
        store.commit()
        seconds["expire"] += time.perf_counter() - began
    assert gone == expired - expired % step, (engine, gone)
    assert store.get(key_of(0)) is None and store.get(key_of(hits[0])) is not None
    store.close()

    counts = {"insert": entries, "hit": ops, "miss": ops, "update": ops, "delete": ops,
              "expire": gone}
    return {
        "engine": engine, "entries": entries,
        "us": {phase: seconds[phase] / counts[phase] * 1e6 for phase in seconds},
        "seconds": sum(seconds.values()),
        # the engine's own threads (RocksDB's flushes and compactions): the timings miss it
        "background_cpu_s": max(0.0, time.process_time() - time.thread_time()),
        "disk_bytes_per_entry": disk / entries,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "anon_rss_mb": _anon_rss_kib() / 1024,
    }


def run_child(engine: str, entries: int) -> dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix=f"join-store-{engine}-", dir="/tmp"))
    try:
        began = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "bench.join_store_engines", "--child", engine,
             str(entries), str(folder)],
            check=True, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent,
        )
        result: dict[str, Any] = json.loads(done.stdout)
        result["wall_s"] = time.perf_counter() - began
        return result
    finally:
        shutil.rmtree(folder, ignore_errors=True)


HEADER = ("| entries | engine | run | insert µs | hit µs | miss µs | update µs | delete µs "
          "| expire µs | disk B/entry | peak RSS MB | anon RSS MB | wall s | background CPU s |\n"
          "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")


def table_row(result: dict[str, Any], run: int) -> str:
    us = result["us"]
    cells = [f"{result['entries']:,}", result["engine"], str(run)]
    cells += [f"{us[phase]:.1f}" for phase in ("insert", "hit", "miss", "update", "delete",
                                                "expire")]
    cells += [f"{result['disk_bytes_per_entry']:.0f}", f"{result['peak_rss_mb']:.0f}", f"{result['anon_rss_mb']:.0f}",
              f"{result['wall_s']:.0f}", f"{result['background_cpu_s']:.1f}"]
    return "| " + " | ".join(cells) + " |"


def machine_note() -> str:
    from bench.environment import describe

    facts = describe(broker_binary="none")
    versions = []
    for package in ("lmdb", "rocksdict"):
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{package} not installed")
    import sqlite3

    return (f"{facts['cpu_count']} shared cores ({facts['cpu_model']}), {facts['python']}, "
            f"{facts['platform']}, files on ext4 under /tmp; SQLite {sqlite3.sqlite_version}, "
            f"{', '.join(versions)}; load average at start {facts['load_average_at_start']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--engines", nargs="+", choices=tuple(ENGINES), default=list(ENGINES))
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS,
                        help="the markdown file the table is written to ('-': none)")
    parser.add_argument("--append", action="store_true",
                        help="add this run's table to --out instead of replacing the file")
    parser.add_argument("--child", nargs=3, metavar=("ENGINE", "ENTRIES", "FOLDER"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], int(args.child[1]), Path(args.child[2]))))
        return
    note = machine_note()
    rows: list[tuple[int, int, int, str]] = []
    print(HEADER, flush=True)
    for run in range(1, args.runs + 1):  # runs outermost: a noisy minute blurs every engine
        for entries in args.entries:
            for order, engine in enumerate(args.engines):
                rows.append((entries, order, run, table_row(run_child(engine, entries), run)))
                print(rows[-1][-1], flush=True)
    if str(args.out) != "-":
        write_results(args.out, [row for *_, row in sorted(rows)], note, append=args.append)
        print(f"\n{'appended' if args.append else 'written'} to {args.out}")


def write_results(out: Path, rows: list[str], note: str, *, append: bool) -> None:
    """The table under a line saying when, how and on what; ``append``: a section more."""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    command = " ".join(["python -m bench.join_store_engines", *sys.argv[1:]])
    section = f"{when}, `{command}`. {note}.\n\n{HEADER}\n" + "\n".join(rows) + "\n"
    if append and out.exists():
        out.write_text(out.read_text() + "\n" + section)
        return
    out.write_text(
        "# Join store engines\n\n"
        f"µs per operation (batches of {BATCH:,}, one commit per batch); lookups, updates and "
        f"deletes: {OPS:,} distinct random entries each (a quarter of N below {4 * OPS:,}); "
        "expire: the oldest 10%, each read and removed; disk: allocated bytes after the inserts / entries; "
        "anon RSS: at the end, without the file pages the process maps; background CPU: "
        "the engine's own threads, which the µs columns do not see.\n\n" + section)


if __name__ == "__main__":
    main()
