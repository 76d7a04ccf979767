"""What one joiner checkpoint costs as its state grows (issue 18: "checkpoint cost
independent of the state size").

For each size N of pending (unlabelled) events, a :class:`JoinCore` holding N of them
takes 1,000 new events, then is checkpointed both ways the joiner does:

- ``changelog`` (exactly once, the default on Apache Kafka): the records of the events
  that changed plus one header, as :meth:`JoinerRole.changelog` writes them into the
  commit's transaction;
- ``snapshot`` (at least once, the embedded broker): the whole state, encoded, as
  :meth:`JoinerRole.offsets` writes it to disk before committing.

It prints one JSON line per size: CPU milliseconds (process time, median of 5) and bytes
of each. Run: ``.venv/bin/python bench/checkpoint_cost.py [--sizes 10000 100000 1000000]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from riverops.roles.joiner import JoinCore, JoinInput
from riverops.roles.joiner.changelog import encode_changes, encode_header
from riverops.schemas.codec import SingleObjectCodec

CODEC = SingleObjectCodec()
NEW = 1_000


def _features(event_id: str, t: int) -> bytes:
    return CODEC.encode("FeatureEvent", {"event_id": event_id, "model": "fraud", "entity_id": "c",
                                         "event_time": t, "features": {f"f{i}": i / 7 for i in range(20)}})


def _inputs(start: int, count: int, offset: int) -> list[JoinInput]:
    payload = _features("x", 0)  # the payload is opaque to the core: one for all
    return [JoinInput("features", f"e{i}", payload, 1_000 + i, ("t.features", 0, offset + k))
            for k, i in enumerate(range(start, start + count))]


def measure(size: int, rounds: int = 5) -> dict[str, float]:
    core = JoinCore(ttl_ms=10**12)
    for start in range(0, size, 50_000):
        core.add_many(_inputs(start, min(50_000, size - start), start))
        core.flush()
    core.changes()  # the state so far counts as written
    changelog_ms, snapshot_ms, changelog_bytes, snapshot_bytes = [], [], 0, 0
    for r in range(rounds):
        core.add_many(_inputs(size + r * NEW, NEW, size + r * NEW))
        core.flush()
        started = time.process_time()
        records = encode_changes(0, core.changes()) + [encode_header(0, core.state(whole=False))]
        changelog_ms.append((time.process_time() - started) * 1e3)
        changelog_bytes = sum(len(key or b"") + len(value or b"") for _p, key, value in records)
        started = time.process_time()
        snapshot = core.snapshot()
        snapshot_ms.append((time.process_time() - started) * 1e3)
        snapshot_bytes = len(snapshot)
    return {"pending": size, "new_events": NEW,
            "changelog_cpu_ms": round(statistics.median(changelog_ms), 3), "changelog_bytes": changelog_bytes,
            "snapshot_cpu_ms": round(statistics.median(snapshot_ms), 3), "snapshot_bytes": snapshot_bytes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    for size in parser.parse_args().sizes:
        print(json.dumps(measure(size)), flush=True)


if __name__ == "__main__":
    main()
