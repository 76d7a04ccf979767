"""Memory per pending event of the joiner core, and what its snapshots cost.

Each measurement runs in a fresh child process (so one run's garbage does not blur the
next): N events with 20 numeric features and a 36-character event id (a uuid) are added
and left waiting for their label, then the script prints bytes per pending event measured
two ways (tracemalloc: bytes Python allocated; RSS: what the OS gave the process,
allocator slack included) next to the core's own ``pending_bytes`` estimate, then the
snapshot size and the snapshot / restore / replay_from times, and the rate of adds and of
joins (labels added, feedback decoded at flush).

    .venv/bin/python bench/join_memory.py                 # 100k and 1M, features + champion
    .venv/bin/python bench/join_memory.py --events 100000 --shape features features+3
    .venv/bin/python bench/join_memory.py --events 10000000 --method rss --spill 50000

With ``--spill N`` the core keeps N pending events in memory and spills the rest to its
SQLite file (``JoinCore(spill_to=..., memory_events=N)``): the figures are then RSS (the
dicts, SQLite's page cache) and the file's bytes per event, and the joins are of the
OLDEST events (their features on disk, as a label days late finds them); the whole
snapshot and restore are skipped (they copy the state: at least once only). Either way
the core's changes are taken after every flush, as exactly-once commits take them.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from riverops.roles.joiner import JoinCore
from riverops.schemas.codec import SingleObjectCodec

Shape = Literal["features", "features+1", "features+3", "label"]
SHAPES: tuple[Shape, ...] = ("features", "features+1", "features+3", "label")
T0 = 1_767_225_600_000  # 2026-01-01, ms
PLACEHOLDER = "x" * 36


def _template(name: str, record: dict[str, Any]) -> Callable[[str], bytes]:
    """A fast maker of payloads that differ only by their 36-character event id."""
    payload = SingleObjectCodec().encode(name, {**record, "event_id": PLACEHOLDER})
    head, tail = payload.split(PLACEHOLDER.encode())
    return lambda event_id: head + event_id.encode() + tail


def _makers() -> dict[str, Callable[[str], bytes]]:
    features = {f"f{i:02d}": (i + 1) / 3.0 for i in range(20)}
    prediction = {"model": "fraud", "version": 3, "prediction": True,
                  "scores": {"True": 0.8, "False": 0.2}, "latency": 0.0012,
                  "event_time": T0, "predicted_at": T0 + 3}
    return {
        "features": _template("FeatureEvent", {"model": "fraud", "entity_id": "card-000123456",
                                               "event_time": T0, "features": features}),
        "champion": _template("PredictionEvent", {**prediction, "variant": "champion"}),
        "challenger": _template("PredictionEvent", {**prediction, "variant": "challenger",
                                                    "version": 4}),
        "shadow": _template("PredictionEvent", {**prediction, "variant": "shadow", "version": 5}),
        "label": _template("LabelEvent", {"model": "fraud", "label": False, "label_time": T0}),
    }


def _fill(core: JoinCore, events: int, shape: Shape, *, commit: bool = False) -> float:
    """Add ``events`` pending events of ``shape``; the seconds it took. ``commit``: take
    the core's changes after each flush, as an exactly-once commit does (the set of
    changed ids is otherwise kept until a checkpoint)."""
    make = _makers()
    kinds: list[tuple[str, str, str]] = {  # (maker, kind, topic)
        "features": [("features", "features", "features")],
        "features+1": [("features", "features", "features"),
                       ("champion", "prediction", "predictions")],
        "features+3": [("features", "features", "features"),
                       ("champion", "prediction", "predictions"),
                       ("challenger", "prediction", "predictions"),
                       ("shadow", "prediction", "predictions")],
        "label": [("label", "label", "labels")],
    }[shape]
    offsets = dict.fromkeys(("features", "predictions", "labels"), 0)
    started = time.perf_counter()
    for start in range(0, events, 1000):
        for index in range(start, min(start + 1000, events)):
            event_id = str(uuid.UUID(int=index))
            for maker, kind, topic in kinds:
                core.add(kind, event_id, make[maker](event_id), T0 + index,  # type: ignore[arg-type]
                         (topic, 0, offsets[topic]))
                offsets[topic] += 1
        core.flush()
        if commit:
            core.changes()
    return time.perf_counter() - started


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        import os

        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(events: int, shape: Shape, method: str, spill: int = 0) -> dict[str, Any]:
    """One measurement in this (fresh) process."""
    SingleObjectCodec()  # schemas parsed and imports done before the baseline
    gc.collect()
    if method == "tracemalloc":
        tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0] if method == "tracemalloc" else _rss()
    folder = Path(tempfile.mkdtemp(prefix="join-spill-"))
    core = JoinCore(spill_to=folder / "p0.sqlite", memory_events=spill) if spill else JoinCore()
    seconds = _fill(core, events, shape, commit=True)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0] if method == "tracemalloc" else _rss()
    stats = core.stats()
    out: dict[str, Any] = {
        "events": events, "shape": shape, "method": method, "spill": spill,
        "bytes_per_event": (after - before) / events,
        "estimate_per_event": stats.pending_bytes / events,
        "adds_per_s": events * (1 + 3 * (shape == "features+3") + (shape == "features+1"))
        / seconds,
    }
    if spill:
        out["rss_mb"] = after / 1e6
        out["on_disk"] = stats.pending_on_disk
        out["file_bytes_per_event"] = (folder / "p0.sqlite").stat().st_size / events
        if shape == "features+1":
            out["joins_per_s"] = _join(core, min(events, 100_000), at=T0 + events)
        out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
        core.close()
        folder.rmdir()
        return out
    folder.rmdir()
    if method != "rss":
        return out
    started = time.perf_counter()
    snapshot = core.snapshot()
    out["snapshot_mb"] = len(snapshot) / 1e6
    out["snapshot_s"] = time.perf_counter() - started
    started = time.perf_counter()
    restored = JoinCore.restore(snapshot)
    out["restore_s"] = time.perf_counter() - started
    started = time.perf_counter()
    core.replay_from()
    out["replay_from_s"] = time.perf_counter() - started
    assert restored.stats() == stats
    del restored, snapshot
    if shape == "features+1":
        out["joins_per_s"] = _join(core, min(events, 100_000), at=T0 + events)
    return out


def _join(core: JoinCore, joined: int, *, at: int) -> float:
    """Joins per second of the first (oldest) ``joined`` events: labels in, feedback
    decoded at flush."""
    make = _makers()["label"]
    started = time.perf_counter()
    for start in range(0, joined, 1000):
        for index in range(start, min(start + 1000, joined)):
            event_id = str(uuid.UUID(int=index))
            core.add("label", event_id, make(event_id), at, ("labels", 0, index))
        core.flush()
    return joined / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--shape", nargs="+", choices=SHAPES, default=["features+1"])
    parser.add_argument("--method", nargs="+", choices=("rss", "tracemalloc"),
                        default=["tracemalloc", "rss"])
    parser.add_argument("--spill", type=int, default=0, metavar="N",
                        help="keep N pending events in memory, spill the rest to SQLite (0: no file)")
    parser.add_argument("--child", nargs=4, metavar=("EVENTS", "SHAPE", "METHOD", "SPILL"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(int(args.child[0]), args.child[1], args.child[2], int(args.child[3]))))
        return
    for events in args.events:
        for shape in args.shape:
            for method in args.method:
                run = subprocess.run(
                    [sys.executable, __file__, "--child", str(events), shape, method, str(args.spill)],
                    check=True, capture_output=True, text=True,
                )
                result = json.loads(run.stdout)
                line = (f"{events:>9,} pending  {shape:<11} {method:<11} "
                        f"{result['bytes_per_event']:6.0f} B/event "
                        f"(estimate {result['estimate_per_event']:.0f})  "
                        f"adds {result['adds_per_s']:,.0f}/s")
                if args.spill:
                    line += (f"\n{'':10} spill {args.spill:,}: RSS {result['rss_mb']:.0f} MB (peak "
                             f"{result['peak_rss_mb']:.0f}), {result['on_disk']:,} on disk, file "
                             f"{result['file_bytes_per_event']:.0f} B/event")
                if "snapshot_mb" in result:
                    line += (f"\n{'':10} snapshot {result['snapshot_mb']:.1f} MB in "
                             f"{result['snapshot_s']:.2f} s, restore {result['restore_s']:.2f} s, "
                             f"replay_from {result['replay_from_s']:.2f} s")
                if "joins_per_s" in result:
                    line += f", joins {result['joins_per_s']:,.0f}/s"
                print(line, flush=True)


if __name__ == "__main__":
    main()
