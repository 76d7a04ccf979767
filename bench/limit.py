"""The limit: River in-process, predict then learn on the same stream and model, no Kafka.

Two ways: per event (``predict_proba_one`` + ``learn_one``) and in 1000-row batches
(``riverops.models.batch.predict_proba_batch`` + ``learn_batch``, i.e. ``*_many`` on a DataFrame).
No broker, no codec: what a streaming system cannot beat on one core.
"""

from __future__ import annotations

import copy
import time
from typing import Any

from bench.workload import label_of, rows
from riverops.models.batch import learn_batch, predict_proba_batch
from riverops.models.specs import drop_missing

__all__ = ["measure_limit"]


def _one_by_one(model: Any, xs: list[dict[str, float]], ys: list[bool]) -> None:
    for x, y in zip(xs, ys, strict=True):
        x = drop_missing(x)
        model.predict_proba_one(x)
        model.learn_one(x, y)


def _batched(model: Any, xs: list[dict[str, float]], ys: list[bool], batch: int = 1000) -> None:
    for start in range(0, len(xs), batch):
        predict_proba_batch(model, xs[start:start + batch])
        learn_batch(model, xs[start:start + batch], ys[start:start + batch])


def measure_limit(champion: Any, *, events: int, repeats: int = 2) -> dict[str, float]:
    """Events/s (wall clock) and CPU µs per event, best of ``repeats``, each run on a fresh
    copy of ``champion``."""
    xs = rows(events, seed=7)
    ys = [label_of(x) for x in xs]
    out: dict[str, float] = {}
    for name, run in (("per_event", _one_by_one), ("batched", _batched)):
        best, best_cpu = float("inf"), float("inf")
        for _ in range(repeats):
            model = copy.deepcopy(champion)
            started, cpu = time.perf_counter(), time.process_time()
            run(model, xs, ys)
            best = min(best, time.perf_counter() - started)
            best_cpu = min(best_cpu, time.process_time() - cpu)
        out[name] = events / best
        out[f"{name}_cpu_us"] = best_cpu / events * 1e6
    return out
