"""The monitor's CPU per labelled event in process: FeedbackEvent decode and MonitorCore.

    .venv/bin/python -m bench.profile_monitor            # the generic feature map
    .venv/bin/python -m bench.profile_monitor --typed    # the bench model's typed record

The bench stream's events (20 features, one champion prediction each) are joined by a
``JoinCore`` into the FeedbackEvent payloads the joiner writes (spliced: typed features
give the typed FeedbackEvent), then decoded in batches and folded into a fresh
``MonitorCore`` with the monitor's default settings, its status read every
``--read-every`` events as the role reads it every ``emit_seconds``. CPU time per event,
best of ``--repeats``, with the workers' gc thresholds (``riverops.worker.tune_gc``);
no Kafka. Run it beside the code before a change (a worktree on ``PYTHONPATH``) for an
A/B: the machine is shared, so compare pairs run one after the other.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from bench.workload import feature_records, label_records, rows, typed_features
from riverops.roles.joiner import JoinCore, JoinInput
from riverops.roles.monitor import MonitorCore
from riverops.schemas.codec import Codec
from riverops.sections import MonitorSettings
from riverops.settings import Settings
from riverops.worker import tune_gc


def feedback_payloads(codec: Codec, events: int) -> list[bytes]:
    """The FeedbackEvent payloads a joiner writes for ``events`` bench events."""
    xs = rows(events, seed=7)
    rng = random.Random(1)
    inputs: list[JoinInput] = []
    for i, (features, label) in enumerate(zip(feature_records(xs), label_records(xs), strict=True)):
        p = rng.random()
        prediction = {"event_id": features["event_id"], "model": features["model"], "version": 1,
                      "variant": "champion", "prediction": p > 0.5, "scores": {"True": p, "False": 1 - p},
                      "latency": 0.001, "event_time": features["event_time"],
                      "predicted_at": features["event_time"]}
        event_id = features["event_id"]
        inputs += [JoinInput("features", event_id, codec.encode("FeatureEvent", features), i, ("f", 0, i)),
                   JoinInput("prediction", event_id, codec.encode("PredictionEvent", prediction), i, ("p", 0, i)),
                   JoinInput("label", event_id, codec.encode("LabelEvent", label), i + 1_000, ("l", 0, i))]
    core = JoinCore(codec=codec, encoded=True)
    core.add_many(inputs)
    return [payload for _, payload in core.flush().encoded]


def measure(payloads: list[bytes], codec: Codec, *, batch: int, read_every: int) -> tuple[float, float]:
    """(µs per event in all, µs of it decoding) over one pass into a fresh core."""
    monitor = MonitorCore.from_settings(MonitorSettings())
    began, decoding, since = time.process_time(), 0.0, 0
    for start in range(0, len(payloads), batch):
        decode_began = time.process_time()
        records = codec.decode_many("FeedbackEvent", payloads[start:start + batch])
        decoding += time.process_time() - decode_began
        monitor.update(records)  # type: ignore[arg-type]  # every payload decodes here
        since += batch
        if since >= read_every:
            monitor.status()
            since = 0
    total = time.process_time() - began
    return total / len(payloads) * 1e6, decoding / len(payloads) * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--typed", action="store_true", help="features as the bench model's typed record")
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--batch", type=int, default=500, help="feedback records per decode and update")
    parser.add_argument("--read-every", type=int, default=10_000, help="events between status reads")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    tune_gc()
    with tempfile.TemporaryDirectory() as folder:
        settings = Settings(state_dir=Path(folder))
        codec = (typed_features(settings) if args.typed else settings).codec()
        payloads = feedback_payloads(codec, args.events)
    best = min(measure(payloads, codec, batch=args.batch, read_every=args.read_every)
               for _ in range(args.repeats))
    kind = "typed" if args.typed else "generic"
    print(f"monitor, {kind} FeedbackEvent ({len(payloads[0])} bytes), {args.events:,} events: "
          f"{best[0]:.1f} µs per labelled event, of which decode {best[1]:.1f} µs")


if __name__ == "__main__":
    main()
