"""The Confluent wire format against a real Schema Registry server over HTTP (Apicurio's ccompat).

Every lookup goes over the wire: each decode uses a fresh codec (a new client, no cached ids),
so writer schemas come from the server by the id in the payload. The server starts with
BACKWARD compatibility, Confluent's default, so its check is in force for the evolution tests.
A server that cannot be fetched or started fails these tests; it never skips them.
"""

from __future__ import annotations

import copy
import json
import struct
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from riverops.kafka.clients import make_consumer, make_producer
from riverops.kafka.topics import TopicCatalogue, create_topics
from riverops.schemas import events as ev
from riverops.schemas.codec import ConfluentCodec, make_codec
from riverops.schemas.contracts import SCHEMA_NAMES, SchemaStore, parse_contract
from riverops.schemas.errors import EncodeError
from riverops.settings import Settings

from .schemaregistry import ApicurioRegistry, RegistryServerError

V1: dict[str, Any] = json.loads(SchemaStore.bundled().reader("FeatureEvent").source)
V2 = copy.deepcopy(V1)
V2["fields"].append({"name": "source", "type": "string", "default": "unknown"})
NO_DEFAULT = copy.deepcopy(V1)  # a reader that cannot read v1 records: no value for "region"
NO_DEFAULT["fields"].append({"name": "region", "type": "string"})
TYPE_CHANGE = copy.deepcopy(V1)
TYPE_CHANGE["fields"][0]["type"] = "long"  # event_id: string -> long

RECORD = {"event_id": "e", "model": "m", "entity_id": "x", "event_time": 0, "features": {"a": 1.0}}


@pytest.fixture(scope="module")
def registry_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One Apicurio Registry for the module: its ccompat base URL."""
    log = tmp_path_factory.mktemp("schema-registry") / "apicurio.log"
    server = ApicurioRegistry(log_path=log)
    try:
        server.start()
    except RegistryServerError as exc:
        pytest.fail(f"no schema registry server for the Confluent format tests: {exc}",
                    pytrace=False)
    try:
        yield server.url
    finally:
        server.stop()


def get(url: str, path: str) -> Any:
    """GET a path of the registry's API; the decoded JSON body."""
    with urllib.request.urlopen(url + path, timeout=10) as response:
        assert response.status == 200
        return json.loads(response.read())


def subject_of(name: str) -> str:
    """The record-name subject the codec registers a schema under."""
    source = json.loads(SchemaStore.bundled().reader(name).source)
    return f"{source['namespace']}.{source['name']}"


def schema_id(payload: bytes) -> int:
    magic, found = struct.unpack_from(">bI", payload)
    assert magic == 0
    return int(found)


def versions(url: str, subject: str) -> list[int]:
    return list(get(url, f"/subjects/{urllib.parse.quote(subject)}/versions"))


def test_the_server_checks_backward_compatibility(registry_url: str) -> None:
    assert get(registry_url, "/config")["compatibilityLevel"] == "BACKWARD"


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_every_event_type_round_trips_through_the_server(
    name: str, registry_url: str, sample_events: list[ev.Event]
) -> None:
    event = next(e for e in sample_events if e.schema_name == name)
    payload = make_codec("confluent", registry_url=registry_url).encode(name, event.to_avro())

    assigned = schema_id(payload)
    subject = subject_of(name)
    assert subject in get(registry_url, "/subjects")
    latest = get(registry_url, f"/subjects/{urllib.parse.quote(subject)}/versions/latest")
    assert latest["subject"] == subject and latest["id"] == assigned
    stored = get(registry_url, f"/schemas/ids/{assigned}")
    assert parse_contract(json.loads(stored["schema"])).fingerprint == (
        SchemaStore.bundled().reader(name).fingerprint
    )

    decoded = make_codec("confluent", registry_url=registry_url).decode(name, payload)
    assert ev.EVENT_TYPES[name].from_avro(decoded) == event


def test_v1_and_v2_records_decode_both_ways(registry_url: str) -> None:
    v1_payload = make_codec("confluent", registry_url=registry_url).encode("FeatureEvent", RECORD)
    v2_writer = make_codec(
        "confluent", registry_url=registry_url, store=SchemaStore.bundled().with_reader(V2)
    )
    v2_payload = v2_writer.encode("FeatureEvent", {**RECORD, "source": "pos"})

    v1_id, v2_id = schema_id(v1_payload), schema_id(v2_payload)
    assert v1_id != v2_id  # the server accepted v2 as a new version of the subject
    subject = subject_of("FeatureEvent")
    assert len(versions(registry_url, subject)) >= 2
    assert get(registry_url, f"/subjects/{urllib.parse.quote(subject)}/versions/latest")["id"] == v2_id

    v1_reader = make_codec("confluent", registry_url=registry_url)  # knows only v1
    decoded = v1_reader.decode("FeatureEvent", v2_payload)
    assert "source" not in decoded and decoded["features"] == {"a": 1.0}
    v2_reader = make_codec(
        "confluent", registry_url=registry_url, store=SchemaStore.bundled().with_reader(V2)
    )
    assert v2_reader.decode("FeatureEvent", v1_payload)["source"] == "unknown"


@pytest.mark.parametrize(
    ("change", "schema"),
    [("a field added without a default", NO_DEFAULT), ("a type change", TYPE_CHANGE)],
)
def test_an_incompatible_change_is_refused_by_the_server(
    change: str, schema: dict[str, Any], registry_url: str
) -> None:
    make_codec("confluent", registry_url=registry_url).encode("FeatureEvent", RECORD)  # v1 first
    subject = subject_of("FeatureEvent")
    before = versions(registry_url, subject)

    codec = make_codec(
        "confluent", registry_url=registry_url, store=SchemaStore.bundled().with_reader(schema)
    )
    assert isinstance(codec, ConfluentCodec)
    record = {**RECORD, "region": "eu"} if schema is NO_DEFAULT else {**RECORD, "event_id": 7}
    with pytest.raises(EncodeError, match="the schema registry did not register") as info:
        codec.encode("FeatureEvent", record)

    cause = info.value.__cause__
    assert isinstance(cause, SchemaRegistryError), change
    assert cause.http_status_code == 409 and subject in str(info.value)
    assert versions(registry_url, subject) == before  # nothing stored


def test_an_unknown_schema_id_is_a_404_of_the_server(registry_url: str) -> None:
    with pytest.raises(urllib.error.HTTPError) as info:
        get(registry_url, "/schemas/ids/987654")
    assert info.value.code == 404


def test_every_event_type_round_trips_through_kafka(
    registry_url: str, settings: Settings, group_id: str, sample_events: list[ev.Event]
) -> None:
    scoped = Settings(**{
        **settings.model_dump(), "encoding": "confluent", "schema_registry_url": registry_url,
    })
    catalogue = TopicCatalogue.from_settings(scoped)
    create_topics(AdminClient(scoped.kafka_config()), catalogue)
    topic_of: dict[str, str] = {}
    for spec in catalogue:
        topic_of.setdefault(spec.value_schema, spec.name)

    codec = scoped.codec()
    producer = make_producer(scoped)
    for event in sample_events:
        producer.produce(topic_of[event.schema_name], key=event.schema_name.encode(),
                         value=codec.encode(event.schema_name, event.to_avro()))
    assert producer.flush(15) == 0

    reader = scoped.codec()  # a fresh client: every writer schema is fetched from the server
    consumer = make_consumer(scoped, group_id)
    consumer.subscribe(sorted(set(topic_of.values())))
    received: dict[str, ev.Event] = {}
    deadline = time.monotonic() + 30
    try:
        while len(received) < len(sample_events) and time.monotonic() < deadline:
            for message in consumer.consume(100, 0.5):
                assert message.error() is None, message.error()
                key, value = message.key(), message.value()
                assert key is not None and value is not None and value[0] == 0
                name = key.decode()
                received[name] = ev.EVENT_TYPES[name].from_avro(reader.decode(name, value))
    finally:
        consumer.close()
    assert received == {event.schema_name: event for event in sample_events}
