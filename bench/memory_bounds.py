"""Memory of the bounded per-event structures (issue 18), before and after, measured.

Each measurement runs in a fresh child process (one run's garbage does not blur the next)
and prints one JSON line:

- ``dedupe``: bytes per id (tracemalloc) and microseconds per add once full, of the
  ``OrderedDict`` of (model, uuid) tuples the cores kept and of :class:`RecentIds`;
- ``window``: one key's 300-s time window at a given rate (default 10,000 outcomes/s for
  300 s), the window that kept every outcome (``--old``, measured on fewer outcomes: its
  sorted score lists make each add O(n)) and the bucketed one, with its ROC AUC against the
  exact AUC over the same outcomes and the tie bound;
- ``prefetch``: RSS a consumer adds while librdkafka prefetches a backlog it is not asked
  for (the worker lags), for several ``queued.max.messages.kbytes``, on the embedded
  broker (or ``--bootstrap``);
- ``consumers``: the same with librdkafka in the picture: one consumer per thread, each
  draining a backlog and keeping its last 100k payloads;
- ``sizes``: bytes of the joiner's done set per id, of a count window, and of a bucketed
  time window per task at 300 and 10,000 outcomes/s;
- ``arenas``: RSS (VmRSS, VmHWM from /proc/self/status) of a threaded workload (one
  joiner core per thread, the way ``riverops worker all`` runs each role in a thread),
  with the glibc malloc settings the parent was given (``MALLOC_ARENA_MAX``).

    .venv/bin/python bench/memory_bounds.py dedupe window      # both, defaults
    .venv/bin/python bench/memory_bounds.py window --rate 300
    .venv/bin/python bench/memory_bounds.py arenas              # with and without MALLOC_ARENA_MAX=2
    .venv/bin/python bench/memory_bounds.py prefetch --backlog 300000
"""

from __future__ import annotations

import argparse
import bisect
import collections
import gc
import json
import math
import os
import subprocess
import sys
import threading
import time
import tracemalloc
import uuid
from typing import Any

import numpy as np
from river import linear_model, preprocessing
from river.datasets import synth

from riverops.dedupe import RecentIds
from riverops.models.metrics import ExactROCAUC
from riverops.roles.monitor.auc import tie_share
from riverops.roles.monitor.windows import MetricSet, Outcome, TimeWindow, outcome_of

T0 = 1_767_225_600.0


def dedupe(ids: int) -> dict[str, Any]:
    keys = [str(uuid.uuid4()) for _ in range(2 * ids)]
    out: dict[str, Any] = {"what": "dedupe", "ids": ids}
    for name in ("ordered_dict", "recent_ids"):
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        if name == "ordered_dict":
            seen: collections.OrderedDict[tuple[str, str], None] = collections.OrderedDict()
            for _ in range(ids):  # fresh strings: the structure is what keeps them alive
                seen["fraud", str(uuid.uuid4())] = None
        else:
            recent = RecentIds(ids)
            for _ in range(ids):
                recent.add("fraud", str(uuid.uuid4()))
        out[f"{name}_bytes_per_id"] = (tracemalloc.get_traced_memory()[0] - before) / ids
        tracemalloc.stop()
        started = time.perf_counter()  # full: every add of a new id also forgets the oldest
        if name == "ordered_dict":
            for key in keys:
                pair = ("fraud", key)
                if pair not in seen:
                    seen[pair] = None
                    if len(seen) > ids:
                        seen.popitem(last=False)
            del seen
        else:
            for key in keys:
                recent.add("fraud", key)
            out["recent_ids_nbytes"] = recent.nbytes
            del recent
        out[f"{name}_us_per_add"] = (time.perf_counter() - started) / len(keys) * 1e6
    return out


class EveryOutcome:
    """The time window before buckets (streams/roles/monitor/windows.py until issue 18)."""

    def __init__(self, period: float) -> None:
        self.period = period
        self.obj = MetricSet("binary")
        self._times: collections.deque[float] = collections.deque()
        self._items: collections.deque[Outcome] = collections.deque()
        self._end = -math.inf

    def update(self, t: float, outcome: Outcome) -> None:
        self.expire(t)
        if t <= self._end - self.period:
            return
        i = len(self._times)
        if self._times and t < self._times[-1]:
            i = bisect.bisect_right(self._times, t)
        self._times.insert(i, t)
        self._items.insert(i, outcome)
        self.obj.update(outcome)

    def expire(self, end: float) -> None:
        if end <= self._end:
            return
        self._end = end
        while self._times and self._times[0] <= end - self.period:
            self._times.popleft()
            self.obj.revert(self._items.popleft())


def _outcomes(n: int) -> list[Outcome]:
    """Progressive outcomes of a scaled logistic regression on Agrawal: a real model's
    scores, cycled with new times when more are needed."""
    model = preprocessing.StandardScaler() | linear_model.LogisticRegression()
    out = []
    for x, y in synth.Agrawal(classification_function=2, seed=1).take(n):
        p = model.predict_proba_one(x).get(True, 0.5)
        outcome = outcome_of("binary", bool(y), {"prediction": None, "scores": {"True": p, "False": 1 - p}})
        assert outcome is not None
        out.append(outcome)
        model.learn_one(x, y)
    return out


def window(rate: float, seconds: float, old: bool, pool: int) -> dict[str, Any]:
    outcomes = _outcomes(pool)
    n = int(rate * seconds)

    def fill(count: int) -> TimeWindow | EveryOutcome:
        win: TimeWindow | EveryOutcome = EveryOutcome(300.0) if old else TimeWindow(300.0, "binary")
        for i in range(count):
            # a copy per outcome, as each decoded feedback record brings its own objects
            o = outcomes[i % pool]
            win.update(T0 + (i + 1) / rate, Outcome(o.y_true, o.y_pred, float(str(o.proba)), float(o.error)))
        return win

    timed = min(n, 200_000)  # timed without tracemalloc, which slows every allocation
    started = time.perf_counter()
    fill(timed)
    elapsed = time.perf_counter() - started
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    win = fill(n)
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    out: dict[str, Any] = {
        "what": "window", "old": old, "rate": rate, "seconds": seconds, "outcomes": n,
        "bytes": held, "bytes_per_outcome": held / n, "us_per_update": elapsed / timed * 1e6,
    }
    started = time.perf_counter()
    values = win.obj.values()
    out["read_s"] = time.perf_counter() - started
    out["roc_auc"] = values.get("roc_auc")
    if not old:
        assert isinstance(win, TimeWindow)
        kept = [o for i in range(n) if T0 + (i + 1) / rate > T0 + seconds - 300.0
                for o in (outcomes[i % pool],)]
        exact = _exact_auc(kept)
        out["exact_roc_auc"] = exact
        scores = [b.scores for b in win._buckets.values() if b.scores is not None]
        out["auc_error"] = abs(values["roc_auc"] - exact)
        out["auc_bound"] = tie_share(scores) / 2 if any(s.counts is not None for s in scores) else 0.0
        out["binned_buckets"] = sum(s.counts is not None for s in scores)
        out["buckets"] = len(scores)
    return out


def _exact_auc(outcomes: list[Outcome]) -> float:
    if len(outcomes) <= 50_000:
        auc = ExactROCAUC()
        for o in outcomes:
            auc.update(o.y_true, o.proba)
        return auc.get()
    pos = np.array([o.proba for o in outcomes if o.y_true])
    neg = np.sort(np.array([o.proba for o in outcomes if not o.y_true]))
    below = np.searchsorted(neg, pos, side="left")
    ties = np.searchsorted(neg, pos, side="right") - below
    return float((int(below.sum()) + 0.5 * int(ties.sum())) / (len(pos) * len(neg)))


def _traced(build: Any) -> tuple[int, Any]:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    made = build()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return held, made


def sizes() -> dict[str, Any]:
    """Bytes per entry of the other per-event structures the bounds table names: the
    joiner's done set (event id -> ms), the count window (1000 outcomes), and a bucketed
    time window per task at 300 and 10,000 outcomes/s."""
    from river import utils  # noqa: PLC0415

    n = 100_000
    done_bytes, _ = _traced(lambda: {str(uuid.uuid4()): 1_767_225_600_000 + i for i in range(n)})
    binary = _outcomes(3000)
    multi: list[Outcome] = []
    for i, o in enumerate(binary):
        c = ("a", "b", "c")[i % 3]
        outcome = outcome_of("multiclass", c, {"prediction": ("a", "b", "c")[(i // 2) % 3],
                                               "scores": {"a": 0.5, "b": 0.3, "c": float(o.proba)}})
        assert outcome is not None
        multi.append(outcome)
    regression = [Outcome(float(i % 17), float(i % 13), None, float(abs(i % 17 - i % 13))) for i in range(3000)]

    def rolling() -> Any:
        window = utils.Rolling(MetricSet, window_size=1000, task="binary")
        for i in range(5000):
            o = binary[i % 3000]
            window.update(Outcome(o.y_true, o.y_pred, float(str(o.proba)), float(o.error)))
        return window

    out: dict[str, Any] = {"what": "sizes", "joiner_done_bytes_per_id": done_bytes / n,
                           "count_window_bytes": _traced(rolling)[0]}
    for task, pool in (("binary", binary), ("multiclass", multi), ("regression", regression)):
        for rate in (300, 10_000):
            def fill(task: Any = task, pool: list[Outcome] = pool, rate: int = rate) -> TimeWindow:
                window = TimeWindow(300.0, task)
                for i in range(rate * 300):
                    window.update(T0 + (i + 1) / rate, pool[i % len(pool)])
                return window
            out[f"time_window_{task}_{rate}_bytes"] = _traced(fill)[0]
    return out


def _status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                out[name] = int(value.split()[0]) * 1024
    return out


def arenas(threads: int, events: int) -> dict[str, Any]:
    """``threads`` joiner cores, one per thread, each joining ``events`` events (features,
    one prediction, a label: the feedback decoded at flush) and dropping them."""
    sys.path.insert(0, os.path.dirname(__file__))
    from join_memory import T0 as MS  # noqa: PLC0415 (the join bench's payloads)
    from join_memory import _makers

    from riverops.roles.joiner import JoinCore

    make = _makers()

    def run(worker: int) -> None:
        core = JoinCore()
        for start in range(0, events, 1000):
            for index in range(start, min(start + 1000, events)):
                event_id = str(uuid.UUID(int=worker << 64 | index))
                core.add("features", event_id, make["features"](event_id), MS + index, ("features", 0, index))
                core.add("prediction", event_id, make["champion"](event_id), MS + index, ("predictions", 0, index))
                core.add("label", event_id, make["label"](event_id), MS + index, ("labels", 0, index))
            core.flush()

    started = time.perf_counter()
    pool = [threading.Thread(target=run, args=(w,)) for w in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return {"what": "arenas", "MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX"),
            "threads": threads, "events": events, "seconds": time.perf_counter() - started, **_status()}


def prefetch(bootstrap: str, topic: str, kbytes: int, wait: float, backlog: int, backoff_ms: int) -> dict[str, Any]:
    """One consumer assigned the whole backlog, given one record, then left alone ``wait``
    seconds while librdkafka fetches ahead: the RSS it added; then the rate at which it
    drains the rest in batches of 1000."""
    from confluent_kafka import TopicPartition  # noqa: PLC0415

    from riverops.kafka.clients import consume_batch, make_consumer
    from riverops.settings import Settings

    settings = Settings(bootstrap_servers=bootstrap, consumer_queue_kbytes=kbytes)
    gc.collect()
    before = _status()["VmRSS"]
    overrides = {} if backoff_ms < 0 else {"fetch.queue.backoff.ms": backoff_ms}
    consumer = make_consumer(settings, f"prefetch-{uuid.uuid4().hex[:8]}", **overrides)
    metadata = consumer.list_topics(topic, timeout=10)
    partitions = list(metadata.topics[topic].partitions)
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    got = []
    deadline = time.monotonic() + 30
    while not got and time.monotonic() < deadline:
        got = consumer.consume(1, 1.0)
    time.sleep(wait)  # the worker is busy: librdkafka keeps fetching until its queue is full
    after = _status()
    # then a worker that takes batches as fast as they come: does the cap slow the drain?
    drained, started = len(got), time.perf_counter()
    while drained < backlog:
        batch = consume_batch(consumer, 1000, 5.0)
        if not batch:
            break
        drained += len(batch)
    drain_s = time.perf_counter() - started
    consumer.close()
    return {"what": "prefetch", "kbytes": kbytes, "backoff_ms": backoff_ms, "partitions": len(partitions),
            "rss_added": after["VmRSS"] - before, "VmHWM": after["VmHWM"],
            "drained": drained, "drain_records_per_s": (drained - len(got)) / drain_s}


def consumers(bootstrap: str, topic: str, threads: int, backlog: int) -> dict[str, Any]:
    """``threads`` consumers, one per thread, each draining the whole backlog in batches
    and keeping the last 100k payloads (a worker's state): RSS at the end."""
    from confluent_kafka import TopicPartition  # noqa: PLC0415

    from riverops.kafka.clients import consume_batch, make_consumer
    from riverops.settings import Settings

    settings = Settings(bootstrap_servers=bootstrap)

    def run() -> None:
        consumer = make_consumer(settings, f"arena-{uuid.uuid4().hex[:8]}")
        partitions = list(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        kept: collections.deque[bytes] = collections.deque(maxlen=100_000)
        drained = 0
        while drained < backlog:
            batch = consume_batch(consumer, 1000, 5.0)
            if not batch:
                break
            drained += len(batch)
            kept.extend(bytes(m.value() or b"") + b"." for m in batch)  # a copy made in this thread
        consumer.close()

    started = time.perf_counter()
    pool = [threading.Thread(target=run) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    return {"what": "consumers", "MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX"),
            "threads": threads, "seconds": time.perf_counter() - started, **_status()}


def _fill_backlog(bootstrap: str, topic: str, records: int, size: int) -> None:
    from confluent_kafka.admin import NewTopic  # noqa: PLC0415

    from riverops.kafka.clients import make_admin, make_producer
    from riverops.settings import Settings

    settings = Settings(bootstrap_servers=bootstrap)
    admin = make_admin(settings)
    for future in admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)]).values():
        future.result(timeout=30)
    producer = make_producer(settings, **{"compression.type": "none"})
    rng = np.random.default_rng(1)
    payload = bytes(rng.integers(0, 256, size, dtype=np.uint8))  # incompressible, as Avro floats mostly are
    for i in range(records):
        while True:
            try:
                producer.produce(topic, key=str(i).encode(), value=payload)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(60) == 0


def _child(args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    run = subprocess.run([sys.executable, __file__, "--child", *args], check=True,
                         capture_output=True, text=True, env=env)
    result: dict[str, Any] = json.loads(run.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", nargs="*", choices=("dedupe", "window", "sizes", "arenas", "prefetch", "consumers"),
                        default=["dedupe", "window"])
    parser.add_argument("--ids", type=int, default=200_000)
    parser.add_argument("--rate", type=float, default=10_000.0)
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--old-outcomes", type=int, nargs="+", default=[25_000, 50_000],
                        help="outcomes the every-outcome window is measured on")
    parser.add_argument("--pool", type=int, default=50_000, help="real outcomes made, then cycled")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--events", type=int, default=100_000, help="events per thread (arenas)")
    parser.add_argument("--runs", type=int, default=3, help="runs per arena setting")
    parser.add_argument("--bootstrap", help="a broker for prefetch (else the embedded one is started)")
    parser.add_argument("--backlog", type=int, default=300_000, help="records of the prefetch backlog")
    parser.add_argument("--record-bytes", type=int, default=400)
    parser.add_argument("--kbytes", type=int, nargs="+", default=[65_536, 16_384, 4096])
    parser.add_argument("--wait", type=float, default=10.0, help="seconds the consumer is left alone")
    parser.add_argument("--backoff-ms", type=int, nargs="+", default=[-1],
                        help="fetch.queue.backoff.ms to try (-1: make_consumer's)")
    if sys.argv[1:2] == ["--child"]:
        kind, *rest = sys.argv[2:]
        if kind == "dedupe":
            print(json.dumps(dedupe(int(rest[0]))))
        elif kind == "window":
            print(json.dumps(window(float(rest[0]), float(rest[1]), rest[2] == "old", int(rest[3]))))
        elif kind == "sizes":
            print(json.dumps(sizes()))
        elif kind == "consumers":
            print(json.dumps(consumers(rest[0], rest[1], int(rest[2]), int(rest[3]))))
        elif kind == "prefetch":
            print(json.dumps(prefetch(rest[0], rest[1], int(rest[2]), float(rest[3]), int(rest[4]), int(rest[5]))))
        else:
            print(json.dumps(arenas(int(rest[0]), int(rest[1]))))
        return
    args = parser.parse_args()
    if "dedupe" in args.what:
        print(json.dumps(_child(["dedupe", str(args.ids)])), flush=True)
    if "sizes" in args.what:
        print(json.dumps(_child(["sizes"])), flush=True)
    if "window" in args.what:
        for n in args.old_outcomes:
            print(json.dumps(_child(["window", str(args.rate), str(n / args.rate), "old", str(args.pool)])),
                  flush=True)
        print(json.dumps(_child(["window", str(args.rate), str(args.seconds), "new", str(args.pool)])),
              flush=True)
    if "prefetch" in args.what:
        from riverops.kafka.tansu import EmbeddedBroker  # noqa: PLC0415

        broker = None if args.bootstrap else EmbeddedBroker().start()
        try:
            bootstrap = args.bootstrap or broker.bootstrap_servers  # type: ignore[union-attr]
            topic = f"prefetch-{uuid.uuid4().hex[:8]}"
            _fill_backlog(bootstrap, topic, args.backlog, args.record_bytes)
            for kbytes, backoff in [(k, b) for b in args.backoff_ms for k in args.kbytes]:
                print(json.dumps({**_child(["prefetch", bootstrap, topic, str(kbytes), str(args.wait), str(args.backlog),
                                          str(backoff)]),
                                  "backlog_mb": args.backlog * args.record_bytes / 1e6}), flush=True)
        finally:
            if broker is not None:
                broker.stop()
    if "consumers" in args.what:
        from riverops.kafka.tansu import EmbeddedBroker  # noqa: PLC0415

        broker = None if args.bootstrap else EmbeddedBroker().start()
        try:
            bootstrap = args.bootstrap or broker.bootstrap_servers  # type: ignore[union-attr]
            topic = f"arenas-{uuid.uuid4().hex[:8]}"
            _fill_backlog(bootstrap, topic, args.backlog, args.record_bytes)
            for _ in range(args.runs):
                for setting in (None, "2"):
                    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
                    if setting is not None:
                        env["MALLOC_ARENA_MAX"] = setting
                    print(json.dumps(_child(["consumers", bootstrap, topic, str(args.threads), str(args.backlog)],
                                            env)), flush=True)
        finally:
            if broker is not None:
                broker.stop()
    if "arenas" in args.what:
        for _ in range(args.runs):
            for setting in (None, "2"):
                env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
                if setting is not None:
                    env["MALLOC_ARENA_MAX"] = setting
                print(json.dumps(_child(["arenas", str(args.threads), str(args.events)], env)), flush=True)


if __name__ == "__main__":
    main()
