"""The Quix Streams baseline: riverops' scorer job as a Quix Streams 3.28 app, measured alike.

``warmup + events`` FeatureEvents are preloaded, as for :func:`bench.scorer_rate.measure_scorer`,
then :mod:`bench.quix_app` starts as its own process; the clock runs from the moment the
warm-up predictions are readable to the moment the last one is, and the app's CPU per event
is taken over the same interval. Two variants: Quix's defaults, and ``tuned``
(:data:`bench.quix_app.TUNED`: 30 s commits, lz4 and a 20 ms linger, larger fetches).

quixstreams pins an older confluent-kafka than riverops, so it gets a virtualenv of its own,
``.venv-quix`` next to riverops' ``.venv``: made on first use with the same river, fastavro and
pandas versions as this interpreter, and kept (a stamp file names what it holds).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import pickle
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any, Literal

from bench.harness import (
    ROOT,
    SIGNING_KEY,
    Counter,
    create_plain_topics,
    preload,
    start_worker,
    time_outputs,
    train_champion,
)
from bench.workload import encode_all, feature_records, rows
from riverops.settings import Settings

__all__ = ["QUIX_VENV", "QUIX_VERSION", "VARIANTS", "Variant", "requirements", "ensure_venv",
           "measure_quix"]

QUIX_VERSION = "3.28.1"
QUIX_VENV = ROOT / ".venv-quix"
Variant = Literal["default", "tuned"]
VARIANTS: tuple[Variant, ...] = ("default", "tuned")
_STAMP = ".installed-bench"


def requirements() -> list[str]:
    """What the Quix venv holds: quixstreams, and this interpreter's river, fastavro and pandas
    (pandas: the champion's FeatureEncoder module imports it)."""
    return [f"quixstreams=={QUIX_VERSION}",
            *(f"{name}=={metadata.version(name)}" for name in ("river", "fastavro", "pandas"))]


def ensure_venv(venv: Path = QUIX_VENV, *, log: Callable[[str], None] = print) -> Path:
    """The Quix venv's python, the venv made first if its stamp does not list
    :func:`requirements` (pip from PyPI, a minute or two)."""
    python, stamp = venv / "bin" / "python", venv / _STAMP
    wanted = "\n".join(requirements()) + "\n"
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    log(f"making the Quix Streams venv {venv} ({', '.join(requirements())}): once, a minute or two")
    stamp.unlink(missing_ok=True)
    for argv in ([sys.executable, "-m", "venv", "--clear", str(venv)],
                 [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                  *requirements()]):
        done = subprocess.run(argv, capture_output=True, text=True, timeout=1200)
        if done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
            raise RuntimeError(f"cannot make the Quix venv ({' '.join(argv[:4])} ...):\n{tail}")
    stamp.write_text(wanted)
    return python


def venv_versions(python: Path) -> dict[str, str]:
    """The versions in the Quix venv that bear on the figures."""
    names = ["quixstreams", "confluent-kafka", "river", "fastavro", "orjson"]
    code = ("import json, importlib.metadata as m; "
            f"print(json.dumps({{n: m.version(n) for n in {names!r}}}))")
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60)
    return dict(json.loads(out.stdout)) if out.returncode == 0 else {"error": out.stderr[-300:]}


def _signed_model(workdir: Path) -> tuple[Path, str]:
    """:func:`bench.harness.train_champion`'s model pickled into ``workdir``, and its HMAC."""
    path = workdir / "quix-champion.pkl"
    if not path.exists():
        path.write_bytes(pickle.dumps(train_champion()))
    digest = hmac.new(SIGNING_KEY.encode(), path.read_bytes(), hashlib.sha256).hexdigest()
    return path, digest


def measure_quix(settings: Settings, workdir: Path, *, python: Path, variant: Variant,
                 events: int, warmup: int, timeout: float = 300.0,
                 progress: Any = None, broker_pid: int | None = None) -> dict[str, Any]:
    """Preload ``warmup + events`` features, start the Quix app, and time the ``events``
    predictions after the warm-up ones became readable; ``startup_s`` is from the process
    start to the warm-up predictions readable."""
    tag = uuid.uuid4().hex[:6]
    source = f"{settings.topic_prefix}quix-features"
    sink = f"{settings.topic_prefix}quix-predictions"
    create_plain_topics(settings, [source, sink], settings.partitions)
    total = warmup + events
    items = encode_all(settings.codec(), "FeatureEvent", feature_records(rows(total, seed=7)),
                       key="event_id", time_field="event_time")
    preload(settings, source, items)
    model, digest = _signed_model(workdir)
    env = dict(os.environ)
    env.pop("KAFKA_BOOTSTRAP_SERVERS", None)
    env.update({
        "BENCH_QUIX_BOOTSTRAP": settings.bootstrap_servers, "BENCH_QUIX_SOURCE": source,
        "BENCH_QUIX_SINK": sink, "BENCH_QUIX_GROUP": f"bench-quix-{tag}",
        "BENCH_QUIX_VARIANT": variant, "BENCH_QUIX_MODEL": str(model),
        "BENCH_QUIX_MODEL_HMAC": digest, "BENCH_QUIX_SIGNING_KEY": SIGNING_KEY,
        "BENCH_QUIX_STATE_DIR": str(workdir / f"quix-state-{tag}"),
        "PATH": os.pathsep.join([str(python.parent), env.get("PATH", "")]),
        "VIRTUAL_ENV": str(python.parent.parent),
    })
    counter = Counter(settings, sink)
    counter.wait_assigned()
    launched = time.perf_counter()
    worker = start_worker(settings, f"quix-{variant}", group_prefix="", env=env,
                          command=[str(python), "-m", "bench.quix_app"])
    measured, started = time_outputs(worker, counter, warmup=warmup, events=events, timeout=timeout,
                                     progress=progress, broker_pid=broker_pid)
    return {**measured, "startup_s": started - launched, "variant": variant}
