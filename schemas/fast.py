"""The codec's fast path: cavro (Avro in Cython) for well-formed bodies, fastavro for the rest.

fastavro's per-record call was the floor of every role's decode (the scorer's, the
monitor's, the learner's) and of the scorer's encode; cavro reads the same bodies into the
same dicts in 0.75-0.9x the time (a record of plain doubles; about 0.5x with nullable
ones) and writes the same bytes in 0.7x (docs/benchmarks.md, "2026-12-06: the codec's
fast path"). It is only the fast path: a body it refuses, or one it cannot
prove it read exactly, is handed back (``None``) and the codec asks fastavro, whose
results and error messages stay the reference (a unit test checks both agree on valid,
truncated, padded and corrupted bodies).

Reading exactly: the codec refuses a body with trailing bytes, and cavro does not say
where it stopped. So each schema is read framed: a ``fixed`` field of the header's size
before its fields and a ``fixed`` end marker after them, decoded from ``payload +
END_MARKER``. The marker comes back intact only if the record ended where the payload
does: a short body runs into it, a long one puts its own bytes in its place. The marker
is 16 random bytes drawn when the process starts, so no producer can write it into a
payload, and trailing bytes match it by chance once in 2**128 (or in 2**(8*k) when a
shift by k of it equals itself).

Where both accept a damaged body they read the same values, but for one case: an ``int``
written with a varint longer than 32 bits allow, which fastavro reads as a larger number
and cavro truncates to 32 bits; neither refuses it.
"""

from __future__ import annotations

import functools
import json
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from riverops.schemas.contracts import Contract

try:
    import cavro
except ImportError:  # no wheel for this platform or Python (pyproject.toml): fastavro alone
    cavro = None

__all__ = ["AVAILABLE", "END_MARKER", "decoder", "encoder"]

AVAILABLE = cavro is not None

END_MARKER = secrets.token_bytes(16)
_HEAD, _END = "riverops_framing_head", "riverops_framing_end"
# fastavro's strictness on writing (every field, none unknown, defaults for the missing)
# and its timestamps: cavro's default writes a datetime's milliseconds through a float and
# can lose one (4.092 s written as 4091 ms); the alternate encoding is exact
_OPTIONS = cavro.Options(record_decodes_to_dict=True, record_allow_extra_fields=False,
                         alternate_timestamp_millis_encoding=True) if AVAILABLE else None

Decoder = Callable[[bytes], "dict[str, Any] | None"]
Encoder = Callable[[Mapping[str, Any]], "bytes | None"]


def _refused(_: Any) -> None:
    return None


def _framed(source: str, head: int) -> Any:
    schema = json.loads(source)
    schema["fields"] = [
        {"name": _HEAD, "type": {"type": "fixed", "name": "RiveropsFramingHead", "size": head}},
        *schema["fields"],
        {"name": _END, "type": {"type": "fixed", "name": "RiveropsFramingEnd", "size": len(END_MARKER)}},
    ]
    return cavro.Schema(json.dumps(schema), options=_OPTIONS)


@functools.cache
def _decoder(writer: str, reader: str | None, head: int) -> Decoder:
    if not AVAILABLE:
        return _refused
    try:
        schema = _framed(writer, head)
        if reader is not None:
            schema = _framed(reader, head).reader_for_writer(schema)
    except Exception:  # noqa: BLE001 - a schema cavro will not take (its name rules, a
        return _refused  # registry's writer it cannot resolve): fastavro reads, or says why
    decode = schema.binary_decode

    def read(payload: bytes) -> dict[str, Any] | None:
        try:
            record = decode(payload + END_MARKER)
        except Exception:  # noqa: BLE001 - any refusal: fastavro says why
            return None
        if record.pop(_END) != END_MARKER:
            return None
        del record[_HEAD]
        return record  # type: ignore[no-any-return]

    return read


def decoder(writer: Contract, reader: Contract | None, head: int) -> Decoder:
    """A function reading a payload whose body, after ``head`` header bytes, was written
    with ``writer``, into ``reader``'s shape (``None``: the writer's own); it returns the
    record, or ``None`` where the body is not exactly one well-formed record."""
    return _decoder(writer.source, None if reader is None else reader.source, head)


@functools.cache
def _encoder(source: str) -> Encoder:
    if not AVAILABLE:
        return _refused
    try:
        encode = cavro.Schema(source, options=_OPTIONS).binary_encode
    except Exception:  # noqa: BLE001 - a schema cavro will not take: fastavro writes
        return _refused

    def write(record: Mapping[str, Any]) -> bytes | None:
        try:
            return encode(record)  # type: ignore[no-any-return]
        except Exception:  # noqa: BLE001 - fastavro says why (or writes what it accepts)
            return None

    return write


def encoder(contract: Contract) -> Encoder:
    """A function writing a record's body with ``contract``, or ``None`` where cavro
    refuses it (the codec then asks fastavro)."""
    return _encoder(contract.source)
