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
from typing import Any, Literal, get_args

import fastavro
from fastavro.schema import fingerprint as _fastavro_fingerprint
from fastavro.schema import to_parsing_canonical_form

from riverops.schemas.errors import ConfigError

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
    )


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
    """Reader schemas by event name and every known writer schema by fingerprint."""

    def __init__(self, readers: Iterable[Contract], writers: Iterable[Contract] = ()) -> None:
        self._readers = {contract.name: contract for contract in readers}
        self._writers = {c.fingerprint: c for c in (*self._readers.values(), *writers)}

    @classmethod
    def bundled(cls) -> SchemaStore:
        """The store of the ``.avsc`` files shipped in this package, earlier versions included."""
        return cls(_bundled_contracts(), _previous_contracts())

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
        return SchemaStore(self._readers.values(), (*self._writers.values(), parse_contract(schema)))

    def with_reader(self, schema: Mapping[str, Any]) -> SchemaStore:
        """A store that encodes and decodes ``schema``'s event type with this new version."""
        contract = parse_contract(schema)
        readers = {**self._readers, contract.name: contract}
        return SchemaStore(readers.values(), self._writers.values())

