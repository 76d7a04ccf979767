"""Event contracts of riverops: the Avro schemas, their pydantic mirrors and the codecs."""

from riverops.schemas.codec import Codec, ConfluentCodec, Encoding, SingleObjectCodec, make_codec
from riverops.schemas.contracts import SCHEMA_NAMES, Contract, SchemaName, SchemaStore
from riverops.schemas.errors import DecodeError, RiveropsError, UnknownSchemaError

__all__ = [
    "Codec",
    "ConfluentCodec",
    "Contract",
    "DecodeError",
    "Encoding",
    "RiveropsError",
    "SCHEMA_NAMES",
    "SchemaName",
    "SchemaStore",
    "SingleObjectCodec",
    "UnknownSchemaError",
    "make_codec",
]
