"""The event contracts: the bundled ``.avsc`` files, parsed once, indexed by fingerprint.

A :class:`SchemaStore` knows every writer schema it may meet (by its CRC-64-AVRO
fingerprint) and the reader schema each event type is decoded into. Adding a version of
a schema gives a new store, which is how schema evolution is exercised.

Examples
--------
>>> store = SchemaStore.bundled()
>>> store.reader("LabelEvent").name
'LabelEvent'
>>> len(store.reader("LabelEvent").fingerprint)
8
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal, get_args

import fastavro
from fastavro.schema import fingerprint as _fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

from riverops.schemas.errors import ConfigError
from riverops.schemas.features import (
    feedback_schema,
    load_feature_schemas,
    typed_features,
    typed_feedback,
)

__all__ = ["SchemaName", "SCHEMA_NAMES", "Contract", "SchemaStore", "parse_contract"]

SchemaName = Literal[
    "FeatureEvent",
    "PredictionEvent",
    "LabelEvent",
    "FeedbackEvent",
    "MetricsEvent",
    "DriftEvent",
    "RetrainRequest",
    "ModelVersion",
    "DeadLetter",
]
SCHEMA_NAMES: tuple[SchemaName, ...] = get_args(SchemaName)


@dataclass(frozen=True)
class Contract:
    """One parsed version of one event schema."""

    name: str
    parsed: Any
    canonical: str
    fingerprint: bytes  # 8 bytes, little-endian CRC-64-AVRO, as in single-object encoding
    source: str  # the schema as JSON text, for schema registries
    # a typed FeatureEvent or FeedbackEvent (riverops.schemas.features): read with itself,
    # never resolved to the generic reader (a record of features cannot resolve to a map);
    # same record shape
    reads_itself: bool = False

    @property
    def field_names(self) -> tuple[str, ...]:
        return tuple(field["name"] for field in self.parsed["fields"])


def parse_contract(schema: Mapping[str, Any]) -> Contract:
    """Parse one Avro record schema (a dict as in an ``.avsc`` file)."""
    parsed = fastavro.parse_schema(dict(schema), named_schemas={})
    canonical = to_parsing_canonical_form(parsed)
    fingerprint = bytes.fromhex(_fastavro_fingerprint(canonical, "CRC-64-AVRO"))
    return Contract(
        name=str(schema["name"]),
        parsed=parsed,
        canonical=canonical,
        fingerprint=fingerprint,
        source=json.dumps(schema, sort_keys=True),
        reads_itself=typed_features(schema) or typed_feedback(schema),
    )


@functools.cache
def _derived_feedback(features: str, feedback: str) -> Contract:
    """The typed FeedbackEvent of a typed FeatureEvent (both as their ``source`` JSON)."""
    return parse_contract(feedback_schema(json.loads(features), json.loads(feedback)))


@functools.cache
def _bundled_contracts() -> tuple[Contract, ...]:
    folder = resources.files("riverops.schemas").joinpath("avro")
    return tuple(
        parse_contract(json.loads(folder.joinpath(f"{name}.avsc").read_text("utf-8")))
        for name in SCHEMA_NAMES
    )


@functools.cache
def _previous_contracts() -> tuple[Contract, ...]:
    """Earlier versions of the schemas (``avro/previous/NAME.N.avsc``): records written with
    them still decode, into the current reader schema."""
    folder = resources.files("riverops.schemas").joinpath("avro").joinpath("previous")
    return tuple(
        parse_contract(json.loads(entry.read_text("utf-8")))
        for entry in sorted(folder.iterdir(), key=lambda e: e.name) if entry.name.endswith(".avsc")
    )


class SchemaStore:
    """Reader schemas by event name, every known writer schema by fingerprint, the typed
    feature schema of each model that has one and the typed FeedbackEvent of each typed
    feature schema known (:mod:`riverops.schemas.features`)."""

    def __init__(self, readers: Iterable[Contract], writers: Iterable[Contract] = (),
                 features: Mapping[str, Contract] | None = None) -> None:
        self._readers = {contract.name: contract for contract in readers}
        self._features = dict(features or {})  # model -> the typed FeatureEvent it is written in
        self._writers = {c.fingerprint: c for c in (*self._readers.values(), *writers,
                                                    *self._features.values())}
        # typed FeatureEvent fingerprint -> its typed FeedbackEvent (derived from the reader)
        self._feedback: dict[bytes, Contract] = {}
        generic = self._readers.get("FeedbackEvent")
        typed = [c for c in self._writers.values() if c.reads_itself and c.name == "FeatureEvent"]
        if generic is not None:
            for contract in typed:
                derived = _derived_feedback(contract.source, generic.source)
                self._feedback[contract.fingerprint] = derived
                self._writers.setdefault(derived.fingerprint, derived)

    @classmethod
    def bundled(cls) -> SchemaStore:
        """The store of the ``.avsc`` files shipped in this package, earlier versions included."""
        return cls(_bundled_contracts(), _previous_contracts())

    def with_feature_folder(self, folder: Path) -> SchemaStore:
        """This store plus the typed feature schemas of ``folder`` (``MODEL.avsc`` written
        from now on, ``previous/*.avsc`` still read)."""
        current, previous = load_feature_schemas(folder)
        store = self
        for model, schema in current.items():
            store = store.with_features(model, schema)
        return SchemaStore(store._readers.values(),
                           (*store._writers.values(), *map(parse_contract, previous)),
                           store._features)

    def with_features(self, model: str, schema: Mapping[str, Any]) -> SchemaStore:
        """A store that writes ``model``'s FeatureEvents with the typed ``schema``."""
        contract = parse_contract(schema)
        if not contract.reads_itself:
            raise ConfigError(f"the feature schema of {model} is not a typed FeatureEvent")
        return SchemaStore(self._readers.values(), self._writers.values(),
                           {**self._features, model: contract})

    def writer_for(self, name: str, record: Mapping[str, Any]) -> Contract:
        """The schema ``record`` is written with: its model's typed feature schema for a
        FeatureEvent of a model that has one, else the reader schema of ``name``."""
        if self._features and name == "FeatureEvent":
            typed = self._features.get(record.get("model"))  # type: ignore[arg-type]
            if typed is not None:
                return typed
        return self.reader(name)

    def feedback_of(self, features: bytes) -> Contract | None:
        """The typed FeedbackEvent of the typed FeatureEvent with fingerprint ``features``."""
        return self._feedback.get(features)

    def self_read(self, name: str) -> tuple[Contract, ...]:
        """The writers of ``name`` decoded without resolution: its reader, and its typed
        schemas (the decoders' fast path)."""
        reader = self.reader(name)
        return (reader, *(c for c in self._writers.values() if c.reads_itself and c.name == name))

    def reader(self, name: str) -> Contract:
        """The schema records of ``name`` are encoded with and decoded into."""
        try:
            return self._readers[name]
        except KeyError as exc:
            known = sorted(self._readers)
            raise ConfigError(f"unknown event schema {name!r}; known: {known}") from exc

    def writer(self, fingerprint: bytes) -> Contract | None:
        """The writer schema with this fingerprint, if known."""
        return self._writers.get(fingerprint)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._readers)

    def with_writer(self, schema: Mapping[str, Any]) -> SchemaStore:
        """A store that can also decode records written with ``schema``."""
        return SchemaStore(self._readers.values(), (*self._writers.values(), parse_contract(schema)),
                           self._features)

    def with_reader(self, schema: Mapping[str, Any]) -> SchemaStore:
        """A store that encodes and decodes ``schema``'s event type with this new version."""
        contract = parse_contract(schema)
        readers = {**self._readers, contract.name: contract}
        return SchemaStore(readers.values(), self._writers.values(), self._features)

