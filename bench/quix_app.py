"""The Quix Streams baseline's app: riverops' scorer job written as a Quix Streams user would.

FeatureEvents (Avro single-object encoding) in, one prediction per event out: a custom
deserializer (fastavro's ``schemaless_reader`` on the body after the 10-byte header, the
schema parsed once from schemas/avro/FeatureEvent.avsc), ``sdf.apply`` calling the same
River model's ``predict_proba_one``, ``to_topic`` with Quix's JSON serializer (orjson; event time in epoch ms).

It runs in the Quix venv (quixstreams pins an older confluent-kafka than riverops), as
``python -m bench.quix_app`` started by :mod:`bench.quix_baseline`, which passes everything
in ``BENCH_QUIX_*`` variables. It imports nothing of riverops but the model's classes
(``riverops.models.specs``, to unpickle the champion), read from the source tree.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import pickle
import sys
import types
from pathlib import Path
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form
from quixstreams import Application
from quixstreams.models import Deserializer
from quixstreams.models.serializers import SerializationError

__all__ = ["FeatureEventDeserializer", "build_app", "load_model", "TUNED"]

ROOT = Path(__file__).resolve().parents[1]

TUNED: dict[str, Any] = {
    "commit_interval": 30.0,
    "producer_extra_config": {"compression.type": "lz4", "linger.ms": 20},
    # bigger fetches and a deeper prefetch queue (librdkafka defaults: 1, 1 MiB, 100k)
    "consumer_extra_config": {"fetch.min.bytes": 65536, "max.partition.fetch.bytes": 8 * 2**20,
                              "queued.min.messages": 500_000},
}
"""The tuned variant's Application arguments; the default variant passes none of them."""


def load_model(path: Path, digest: str, key: str) -> Any:
    """The pickled champion, once its HMAC-SHA256 under ``key`` matches ``digest``.

    The pickle refers to ``riverops.models.specs.FeatureEncoder``: the three riverops
    packages are made bare namespaces over their folders, so that module loads from the
    source tree without riverops' own ``__init__`` chain (its Kafka clients)."""
    payload = path.read_bytes()
    if not hmac.compare_digest(hmac.new(key.encode(), payload, hashlib.sha256).hexdigest(), digest):
        raise RuntimeError(f"{path}: the model's signature does not match")
    for name, folder in (("riverops", "streams"), ("riverops.schemas", "schemas"),
                         ("riverops.models", "models")):
        if name not in sys.modules:
            package = types.ModuleType(name)
            package.__path__ = [str(ROOT / folder)]
            sys.modules[name] = package
    return pickle.loads(payload)  # signed: checked above


class FeatureEventDeserializer(Deserializer):
    """Avro single-object encoding: ``C3 01``, the schema's 8-byte fingerprint, the body."""

    def __init__(self, schema_path: Path) -> None:
        super().__init__()
        self.schema = fastavro.parse_schema(json.loads(schema_path.read_text()))
        canonical = to_parsing_canonical_form(self.schema)
        self.header = b"\xc3\x01" + bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
        self._read = fastavro.schemaless_reader

    def __call__(self, value: bytes, ctx: Any) -> dict[str, Any]:
        if value[:10] != self.header:
            raise SerializationError(f"not a FeatureEvent: header {value[:10].hex()}")
        record: dict[str, Any] = self._read(io.BytesIO(value[10:]), self.schema, None)
        return record


def build_app(env: dict[str, str]) -> Any:
    """The Application, its dataframe wired source -> predictions -> sink."""
    model = load_model(Path(env["BENCH_QUIX_MODEL"]), env["BENCH_QUIX_MODEL_HMAC"],
                       env["BENCH_QUIX_SIGNING_KEY"])
    version = int(env.get("BENCH_QUIX_MODEL_VERSION", "1"))
    tuned = TUNED if env.get("BENCH_QUIX_VARIANT") == "tuned" else {}
    app = Application(
        broker_address=env["BENCH_QUIX_BOOTSTRAP"],
        consumer_group=env["BENCH_QUIX_GROUP"],
        auto_offset_reset="earliest",  # the input is preloaded
        state_dir=env["BENCH_QUIX_STATE_DIR"],
        **tuned,
    )
    source = app.topic(env["BENCH_QUIX_SOURCE"],
                       value_deserializer=FeatureEventDeserializer(ROOT / "schemas/avro/FeatureEvent.avsc"))
    sink = app.topic(env["BENCH_QUIX_SINK"], value_serializer="json")

    def score(event: dict[str, Any]) -> dict[str, Any]:
        x = {k: v for k, v in event["features"].items() if v is not None}
        proba = model.predict_proba_one(x)
        return {"event_id": event["event_id"], "model": event["model"], "version": version,
                "score": float(proba.get(True, 0.0)),
                # Quix's orjson options pass datetimes through: epoch milliseconds
                "event_time": int(event["event_time"].timestamp() * 1000)}

    sdf = app.dataframe(source)
    sdf = sdf.apply(score)
    sdf.to_topic(sink)
    return app


if __name__ == "__main__":
    build_app(dict(os.environ)).run()
