"""Input size limits: every output that carries an input (feedback, dead letters) fits the
broker's 1 MB message limit, so no input near that size can become a poison pill."""

from __future__ import annotations

from dataclasses import dataclass

from riverops.kafka.deadletter import dead_letter
from riverops.kafka.limits import MAX_DEAD_VALUE_BYTES, MAX_EVENT_BYTES, MAX_KEY_BYTES, check_record
from riverops.roles.joiner import JoinCore
from riverops.schemas.codec import SingleObjectCodec
from riverops.schemas.errors import DecodeError

BROKER_LIMIT = 1_000_000


@dataclass
class Message:
    """A consumed record as dead_letter() sees it."""

    _key: bytes | None
    _value: bytes | None

    def topic(self) -> str:
        return "t.features"

    def partition(self) -> int:
        return 1

    def offset(self) -> int:
        return 42

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value


def test_check_record_limits() -> None:
    assert check_record(b"k" * MAX_KEY_BYTES, b"v" * MAX_EVENT_BYTES) is None
    assert "bytes, over" in str(check_record(b"k", b"v" * (MAX_EVENT_BYTES + 1)))
    assert "key of" in str(check_record("é" * MAX_KEY_BYTES, b"v"))  # bytes, not chars


def test_a_dead_letter_of_a_record_near_1_mb_still_fits_the_broker() -> None:
    raw = bytes(range(256)) * 3900  # 998,400 bytes: a producer can still send this
    key = b"k" * 20_000
    letter = dead_letter(Message(key, raw), DecodeError("garbage", raw=raw), processor="scorer")
    encoded = SingleObjectCodec().encode("DeadLetter", letter)
    assert len(encoded) + len(letter["key"]) < BROKER_LIMIT
    assert letter["value"] == raw[:MAX_DEAD_VALUE_BYTES]
    assert letter["key"] == key[:MAX_KEY_BYTES]
    assert "value cut to 524288 of 998400 bytes" in letter["reason"]
    assert "key cut to 1024 of 20000 bytes" in letter["reason"]


def test_the_joiner_dead_letters_oversized_records_instead_of_storing_them() -> None:
    codec = SingleObjectCodec()
    big = codec.encode("FeatureEvent", {
        "event_id": "e1", "model": "m", "entity_id": "c", "event_time": 0,
        "features": {f"f{i}": "x" * 2000 for i in range(200)}})  # valid Avro, ~400 KB
    assert len(big) > MAX_EVENT_BYTES
    small = codec.encode("LabelEvent", {"event_id": "e2", "model": "m", "label": True, "label_time": 0})
    core = JoinCore(ttl_ms=1000, codec=codec)
    core.add("features", "e1", big, 0, ("features", 0, 0))
    core.add("label", "e" * (MAX_KEY_BYTES + 1), small, 0, ("labels", 0, 0))
    result = core.flush()
    assert result.outcomes["invalid"] == 2 and core.stats().pending == 0
    letters = [dead_letter(origin, error, processor="joiner") for origin, error in result.rejected]
    reasons = sorted(letter["reason"] for letter in letters)
    assert reasons[0].startswith("key of 1025 bytes") and reasons[1].startswith("record of")
    for letter in letters:
        assert len(codec.encode("DeadLetter", letter)) < BROKER_LIMIT
