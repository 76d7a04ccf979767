"""Size limits on input records, so that every output carrying an input still fits.

The broker refuses messages over ``message.max.bytes`` (1,000,000 bytes by default, on
the producer side too). A feedback event carries its features and label, and a dead
letter carries the raw record: without a limit on what comes in, a valid input near
1 MB makes an output that cannot be produced, the worker stops, restarts on the same
record and stops again (a poison pill). So inputs are held to :data:`MAX_EVENT_BYTES`
and :data:`MAX_KEY_BYTES` and dead-lettered beyond them, and dead letters cut what they
carry to :data:`MAX_DEAD_VALUE_BYTES` (saying so in the reason).

Examples
--------
>>> check_record(b"e-1", b"x" * 10) is None
True
>>> str(check_record(b"e-1", b"x" * (MAX_EVENT_BYTES + 1)))
'record of 262145 bytes, over the 262144-byte limit'
"""

from __future__ import annotations

from riverops.schemas.errors import InvalidEventError

__all__ = [
    "MAX_EVENT_BYTES",
    "MAX_KEY_BYTES",
    "MAX_DEAD_VALUE_BYTES",
    "MAX_REASON_CHARS",
    "check_record",
]

MAX_EVENT_BYTES = 256 * 1024
"""Largest features, label or prediction payload a processor takes (an encoded
FeatureEvent of 100 numeric features is ~2 KB): feedback = features + label + predictions
stays well under the broker's 1 MB."""
MAX_KEY_BYTES = 1024
"""Largest record key (an event_id) a processor takes."""
MAX_DEAD_VALUE_BYTES = 512 * 1024
"""Raw bytes a dead letter keeps; the rest is cut and the reason says how much."""
MAX_REASON_CHARS = 4096


def check_record(key: str | bytes | None, value: bytes | None) -> InvalidEventError | None:
    """The error of a record over the limits, else None (returned, not raised: callers
    dead-letter it)."""
    size = len(value) if value is not None else 0
    if size > MAX_EVENT_BYTES:
        return InvalidEventError(f"record of {size} bytes, over the {MAX_EVENT_BYTES}-byte limit")
    key_size = len(key.encode() if isinstance(key, str) else key) if key is not None else 0
    if key_size > MAX_KEY_BYTES:
        return InvalidEventError(f"key of {key_size} bytes, over the {MAX_KEY_BYTES}-byte limit")
    return None
