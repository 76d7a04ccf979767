"""The peer baseline: a naive faust-streaming pipeline, one event at a time.

An agent reads raw FeatureEvent bytes, decodes them with riverops' codec, calls
``predict_proba_one`` and ``learn_one`` on the same logreg model as every other contender
(label from :func:`bench.workload.label_of`), encodes a PredictionEvent and
``await sink.send(...)`` per event: the pipeline the faust docs lead to. It runs over the
aiokafka transport (``kafka://``); design.md notes that ``confluent://`` processed nothing
on this broker.

Run by the harness as ``python -m bench.faust_baseline worker`` with ``BENCH_FAUST_*``
environment variables; :func:`measure_faust` does all of it and counts the outputs.
faust-streaming is in the ``bench`` extra only (``make bench`` installs it): riverops
itself never imports it, so it is imported here when the baseline is built, and a missing
install is one clear error before any topic is made.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import (
    Counter,
    Worker,
    create_plain_topics,
    preload,
    start_worker,
    train_champion,
)
from bench.workload import encode_all, feature_records, label_of, rows
from riverops.settings import Settings

__all__ = ["build_app", "measure_faust"]


def build_app() -> Any:
    """The faust app, configured from ``BENCH_FAUST_*`` (built on demand, not at import)."""
    _require_faust()
    import faust

    from riverops.models.specs import drop_missing
    from riverops.schemas.codec import SingleObjectCodec

    env = os.environ
    app = faust.App(
        env["BENCH_FAUST_APP"],
        broker=f"kafka://{env['BENCH_FAUST_BOOTSTRAP']}",
        value_serializer="raw",
        key_serializer="raw",
        web_enabled=False,
        store="memory://",
        datadir=env.get("BENCH_FAUST_DATADIR", tempfile.gettempdir()),
        topic_partitions=int(env["BENCH_FAUST_PARTITIONS"]),
        topic_replication_factor=1,
        broker_session_timeout=6.0,
        broker_heartbeat_interval=1.0,
    )
    source = app.topic(env["BENCH_FAUST_SOURCE"], key_serializer="raw", value_serializer="raw")
    sink = app.topic(env["BENCH_FAUST_SINK"], key_serializer="raw", value_serializer="raw")
    codec = SingleObjectCodec()
    model = train_champion()

    @app.agent(source)
    async def score(stream: Any) -> None:
        async for key, value in stream.items():
            record = codec.decode("FeatureEvent", value)
            x = drop_missing(record["features"])
            started = time.perf_counter()
            proba = model.predict_proba_one(x)
            model.learn_one(x, label_of(x))
            prediction = {
                "event_id": record["event_id"], "model": record["model"], "version": 1,
                "variant": "champion", "prediction": bool(proba.get(True, 0.0) >= 0.5),
                "scores": {str(k): float(v) for k, v in proba.items()},
                "latency": time.perf_counter() - started,
                "event_time": record["event_time"], "predicted_at": datetime.now(UTC),
            }
            await sink.send(key=key, value=codec.encode("PredictionEvent", prediction))

    return app


def _require_faust() -> None:
    """Fail with the fix when faust-streaming is not installed."""
    if importlib.util.find_spec("faust") is None:
        raise RuntimeError("faust-streaming is not installed: it is in the bench extra, "
                           "pip install -e '.[bench]' (make bench does)")


def measure_faust(settings: Settings, workdir: Path, *, events: int, warmup: int,
                  timeout: float = 300.0, progress: Any = None) -> dict[str, Any]:
    """Preload ``warmup + events`` features, start the faust worker, and time the
    ``events`` predictions after the warm-up ones became readable."""
    _require_faust()
    tag = uuid.uuid4().hex[:6]
    source, sink = f"{settings.topic_prefix}faust-features", f"{settings.topic_prefix}faust-predictions"
    create_plain_topics(settings, [source, sink], settings.partitions)
    total = warmup + events
    items = encode_all(settings.codec(), "FeatureEvent", feature_records(rows(total, seed=7)),
                       key="event_id", time_field="event_time")
    # uncompressed: aiokafka reads lz4 (riverops' producer default) only with the lz4 package
    preload(settings, source, items, **{"compression.type": "none"})
    env = dict(os.environ)
    env.update({
        "BENCH_FAUST_APP": f"bench-faust-{tag}", "BENCH_FAUST_BOOTSTRAP": settings.bootstrap_servers,
        "BENCH_FAUST_SOURCE": source, "BENCH_FAUST_SINK": sink,
        "BENCH_FAUST_PARTITIONS": str(settings.partitions),
        "BENCH_FAUST_DATADIR": str(workdir / f"faust-{tag}"),
    })
    worker: Worker = start_worker(
        settings, "faust", group_prefix="", env=env,
        command=[sys.executable, "-m", "bench.faust_baseline", "worker", "-l", "warn"],
    )
    counter = Counter(settings, sink)
    try:
        started = counter.wait_for(warmup, timeout=timeout, check=worker.check, progress=progress)
        cpu_at_start = worker.cpu()
        done = counter.wait_for(total, timeout=timeout, check=worker.check, progress=progress)
        cpu = (worker.cpu() - cpu_at_start) / events * 1e6
    finally:
        worker.stop()
        counter.close()
    return {"events_per_s": events / (done - started), "events": events,
            "seconds": done - started, "peak_rss": worker.peak_rss, "cpu_us_per_event": cpu}


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    build_app().main()
