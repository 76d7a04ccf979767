"""Where the scorer's time goes: a pyinstrument profile on the broker, and a stage timer.

    .venv/bin/python -m bench.profile_scorer                  # both, 50k events
    .venv/bin/python -m bench.profile_scorer --mode stages    # no broker: per-stage costs

``broker`` runs :func:`riverops.roles.scorer.run_scorer` in this process under pyinstrument on
preloaded features until every event is scored, and writes the profile as text
to bench/results/scorer-profile.txt. ``stages`` times the scorer's own steps on 1000-event batches with no
Kafka at all (decode, check, score, encode, headers), which is the part the code controls.
Needs the ``bench`` extra (pyinstrument).
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections import Counter as Tally
from pathlib import Path

from bench.harness import bench_settings, preload, register_champion
from bench.workload import encode_all, feature_records, rows
from riverops.kafka.limits import check_record
from riverops.kafka.topics import TopicCatalogue
from riverops.roles.scorer import ScorerCore, ScorerStats, ServingModel, _run_headers, run_scorer
from riverops.schemas.codec import SingleObjectCodec

RESULTS = Path(__file__).resolve().parent / "results"


def stages(events: int, batch: int = 1000, repeats: int = 3) -> dict[str, float]:
    """Microseconds per event of each step of a scorer batch, best of ``repeats``."""
    from bench.harness import train_champion
    from riverops.schemas.events import Artifact, ModelVersion

    codec = SingleObjectCodec()
    records = feature_records(rows(events, seed=7))
    payloads = [p for _, p, _ in encode_all(codec, "FeatureEvent", records, key="event_id",
                                            time_field="event_time")]
    record = ModelVersion(model="bench", version=1, stage="champion", spec="logreg",
                          task="binary", artifact=Artifact(inline=b"", sha256="0" * 64,
                                                           signature="0" * 64, size=0),
                          changed_by="bench", reason="bench", changed_at=records[0]["event_time"])
    core = ScorerCore()
    core.set_plan("bench", champion=ServingModel(record, train_champion(), "champion"))
    best: dict[str, float] = {}
    for _ in range(repeats):
        spent = dict.fromkeys(("decode", "check_record", "score", "encode", "headers"), 0.0)
        for start in range(0, events, batch):
            chunk = payloads[start:start + batch]
            t0 = time.perf_counter()
            decoded = codec.decode_many("FeatureEvent", chunk)
            t1 = time.perf_counter()
            for payload in chunk:
                check_record(b"b0000000", payload)
            t2 = time.perf_counter()
            result = core.score(decoded)  # type: ignore[arg-type]
            t3 = time.perf_counter()
            encoded = codec.encode_many("PredictionEvent", result.predictions)
            t4 = time.perf_counter()
            headers = _run_headers(Tally(p["event_id"] for p in result.predictions))
            for prediction in result.predictions:
                headers(prediction)
                int(prediction["event_time"].timestamp() * 1000)
            t5 = time.perf_counter()
            assert len(encoded) == len(chunk)
            for name, seconds in zip(spent, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4),
                                     strict=True):
                spent[name] += seconds
        for name, seconds in spent.items():
            best[name] = min(best.get(name, float("inf")), seconds / events * 1e6)
    best["total"] = sum(best.values())
    return best


def broker_profile(events: int) -> Path:
    """Profile run_scorer on the embedded broker; the path of the text profile."""
    from pyinstrument import Profiler

    from riverops.kafka.tansu import EmbeddedBroker

    with EmbeddedBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        settings = bench_settings(broker.bootstrap_servers, Path(tmp), partitions=2)
        register_champion(settings)
        items = encode_all(settings.codec(), "FeatureEvent", feature_records(rows(events, seed=7)),
                           key="event_id", time_field="event_time")
        preload(settings, TopicCatalogue.from_settings(settings).name("features"), items)
        stop, stats = threading.Event(), ScorerStats()
        timing: dict[str, float] = {}

        profiler = Profiler(interval=0.0005)

        def on_batch(current: ScorerStats) -> None:
            if "first" not in timing:  # steady state only: not the group join, not the load
                timing["first"] = time.perf_counter()
                profiler.start()
            if current.scored >= events:
                stop.set()

        run_scorer(settings, stop=stop, stats=stats, on_batch=on_batch, group_id="bench-profile")
        profiler.stop()
        rate = events / (time.perf_counter() - timing["first"])  # ~1 batch too many: noise
    RESULTS.mkdir(exist_ok=True)
    text = RESULTS / "scorer-profile.txt"
    text.write_text(f"run_scorer in-process, {events} events, ~{rate:,.0f} events/s "
                    f"(profiler on)\n\n" + profiler.output_text(unicode=False, show_all=False))

    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--mode", choices=("stages", "broker", "both"), default="both")
    args = parser.parse_args(argv)
    if args.mode in ("stages", "both"):
        for name, micros in stages(args.events).items():
            print(f"{name:<13} {micros:7.2f} us/event")
    if args.mode in ("broker", "both"):
        print(f"profile written to {broker_profile(args.events)}")


if __name__ == "__main__":
    main()


__all__ = ["stages", "broker_profile", "main"]
