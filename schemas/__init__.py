"""Event contracts of riverops: the Avro schemas, their pydantic mirrors and the codecs."""

from schemas.codec import Codec, ConfluentCodec, Encoding, SingleObjectCodec, make_codec
from schemas.contracts import SCHEMA_NAMES, Contract, SchemaName, SchemaStore
from schemas.errors import DecodeError, RiveropsError, UnknownSchemaError

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
