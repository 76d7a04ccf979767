"""What the performance estimate costs the scorer, in process (no broker).

``python -m bench.estimate_cost`` scores the benchmark stream (20 numeric features, a logreg
champion, 1000-row batches) through :class:`~riverops.roles.scorer.ScorerCore` with the
estimate off and on, and times the tap's two parts alone: ``observe`` (one array per batch,
on the scorer's path) and ``export`` (one sort of each window, every ``estimate_seconds``).
Best of ``repeats`` (the two scoring runs interleaved), microseconds per event (per call
for the export).
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry

from bench.workload import MODEL, feature_records, label_of, rows
from riverops.models.batch import learn_in_order
from riverops.models.specs import get_spec
from riverops.roles.estimates import ScoreTap
from riverops.roles.scorer import ScorerCore, ServingModel
from riverops.schemas.events import Artifact, ModelVersion
from riverops.telemetry import Telemetry

__all__ = ["measure"]


def _record() -> ModelVersion:
    return ModelVersion(model=MODEL, version=1, stage="champion", spec="logreg", task="binary",
                        artifact=Artifact(inline=b"", sha256="0" * 64, signature="0" * 64, size=0),
                        changed_by="bench", reason="bench", changed_at=datetime.now(UTC))


def _best(run: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def measure(*, events: int = 20_000, batch: int = 1000, window: int = 5000,
            repeats: int = 5) -> dict[str, float]:
    train = rows(5000, seed=1)
    model = get_spec("logreg").build(seed=1)
    learn_in_order(model, train, [label_of(x) for x in train])
    records = feature_records(rows(events, seed=2))
    batches = [records[i:i + batch] for i in range(0, events, batch)]
    serving = ServingModel(_record(), model, "champion")
    out: dict[str, float] = {}
    cores = {}
    for name, tap in (("score_off", None), ("score_on", ScoreTap(size=window))):
        cores[name] = ScorerCore(estimates=tap)
        cores[name].set_plan(MODEL, champion=serving)
    best = dict.fromkeys(cores, float("inf"))
    for _ in range(repeats):  # interleaved: a busy machine slows both alike
        for name, core in cores.items():
            best[name] = min(best[name], _best(lambda core=core: [core.score(b) for b in batches], 1))
    for name, seconds in best.items():
        out[f"{name}_us_per_event"] = seconds / events * 1e6
    core = ScorerCore()
    core.set_plan(MODEL, champion=serving)
    made = [[p["scores"] for p in core.score(b).predictions] for b in batches]
    tap = ScoreTap(size=window)
    indexes = list(range(batch))
    out["observe_us_per_event"] = _best(
        lambda: [tap.observe(serving, indexes, s, {}) for s in made], repeats) / events * 1e6
    telemetry = Telemetry(CollectorRegistry(), role="scorer")

    clock = iter(range(0, 10**9, 10))  # 10 s apart: every call exports

    def export() -> None:
        tap.export(telemetry, float(next(clock)))

    out["export_ms_per_call"] = _best(export, repeats) * 1e3
    out["window"] = float(window)
    out["batch"] = float(batch)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--window", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    print(json.dumps(measure(events=args.events, batch=args.batch, window=args.window,
                             repeats=args.repeats), indent=2))


if __name__ == "__main__":
    main()
