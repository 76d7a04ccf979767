"""Where the scorer's time goes: a pyinstrument profile on the broker, and a stage timer.

    .venv/bin/python -m bench.profile_scorer                  # both, 50k events
    .venv/bin/python -m bench.profile_scorer --mode stages    # no broker: per-stage costs

``broker`` attaches py-spy to a scorer worker process scoring preloaded features on the
embedded broker and writes where its threads spend their time to
bench/results/scorer-profile.txt. ``stages`` times the scorer's own steps on 1000-event batches with no
Kafka at all (decode, check, score, encode, headers), which is the part the code controls.
Needs py-spy (the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter as Tally
from pathlib import Path

from bench.harness import bench_settings, register_champion
from bench.workload import FEATURES, MODEL, encode_all, feature_records, rows, typed_features
from riverops.kafka.limits import check_record
from riverops.roles.scorer import ScorerCore, ServingModel
from riverops.roles.scorer.role import _run_headers
from riverops.schemas.codec import SingleObjectCodec
from riverops.schemas.contracts import SchemaStore
from riverops.schemas.features import feature_schema

RESULTS = Path(__file__).resolve().parent / "results"


def stages(events: int, batch: int = 1000, repeats: int = 3, *, typed: bool = False) -> dict[str, float]:
    """Microseconds per event of each step of a scorer batch, best of ``repeats``; with
    ``typed``, the features written as the bench model's typed record."""
    from bench.harness import train_champion
    from riverops.schemas.events import Artifact, ModelVersion

    store = SchemaStore.bundled()
    if typed:
        store = store.with_features(MODEL, feature_schema(MODEL, dict.fromkeys(FEATURES, "double")))
    codec = SingleObjectCodec(store)
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


def broker_profile(events: int, *, warmup: int = 2_000, rate: int = 200, typed: bool = False,
                   engine: str = "kafka", native: bool = False) -> Path:
    """py-spy on a ``riverops worker scorer`` process while it scores ``events`` preloaded
    features on the embedded broker (the clock of :func:`bench.scorer_rate.measure_scorer`);
    the path of the text summary: the functions by own time, then by time inside them."""
    from bench import pyspy
    from bench.run import _start_broker
    from bench.scorer_rate import measure_scorer

    with tempfile.TemporaryDirectory() as tmp:
        broker = _start_broker(engine, Path(tmp))
        try:
            settings = bench_settings(broker.bootstrap_servers, Path(tmp), partitions=2)
            register_champion(settings)
            if typed:
                settings = typed_features(settings)
            measured = measure_scorer(settings, Path(tmp), events=events, warmup=warmup,
                                      attach=pyspy.attach(Path(tmp) / "pyspy", "profile", rate=rate,
                                                          native=native))
        finally:
            broker.stop()
        own, inside, total = _tally(Path(tmp) / "pyspy" / "profile-scorer.txt", native=native)
    lines = [f"riverops worker scorer on {engine}, {events:,} {'typed ' if typed else ''}events, {measured['events_per_s']:,.0f} "
             f"events/s, {measured['cpu_us_per_event']:.1f} us CPU/event (py-spy at {rate} Hz "
             f"attached, non-blocking; {total} samples of the runtime loop)", "",
             "own time (the frame at the top of the stack)"]
    lines += [f"{n / total:6.1%}  {name}" for name, n in own.most_common(25)]
    lines += ["", "time inside (the frame anywhere in the stack)"]
    lines += [f"{n / total:6.1%}  {name}" for name, n in inside.most_common(30)]
    RESULTS.mkdir(exist_ok=True)
    text = RESULTS / "scorer-profile.txt"
    text.write_text("\n".join(lines) + "\n")
    return text


def _tally(raw: Path, *, native: bool = False) -> tuple[Tally[str], Tally[str], int]:
    """Samples of the runtime loop's thread (stacks through ``Runtime.run``; every thread,
    librdkafka's too, with ``native``) by own frame and by frame anywhere in the stack, from
    py-spy's raw stacks (waits included)."""
    own: Tally[str] = Tally()
    inside: Tally[str] = Tally()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit() or not (native or "Runtime.run " in stack):
            continue
        frames = [f.split(" (")[0] + " (" + f.split(" (")[-1].rsplit("/", 1)[-1]
                  for f in stack.split(";")]
        n = int(count)
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inside[frame] += n
    return own, inside, total


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--mode", choices=("stages", "broker", "both"), default="both")
    parser.add_argument("--broker", choices=("kafka", "tansu"), default="kafka")
    parser.add_argument("--native", action="store_true",
                        help="every thread with its C frames (librdkafka's), not only the loop")
    parser.add_argument("--typed", action="store_true",
                        help="features as the bench model's typed record, not the generic map")
    args = parser.parse_args(argv)
    if args.mode in ("stages", "both"):
        for name, micros in stages(args.events, typed=args.typed).items():
            print(f"{name:<13} {micros:7.2f} us/event")
    if args.mode in ("broker", "both"):
        written = broker_profile(args.events, typed=args.typed, engine=args.broker, native=args.native)
        print(f"profile written to {written}")


if __name__ == "__main__":
    main()


__all__ = ["stages", "broker_profile", "main"]
