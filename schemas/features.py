"""Typed feature schemas: a model's features as an Avro record instead of the generic map.

The generic ``FeatureEvent`` carries ``features`` as a map of four-branch unions, which
any model can use and which costs most of the scorer's decode time (each value is a union
index plus a value, each key a string). A model whose features are known can have its own
``FeatureEvent``, the same fields with ``features`` a record of typed fields::

    {"type": "record", "name": "FeatureEvent", "namespace": "riverops.features.fraud",
     "fields": [event_id, model, entity_id, event_time,
                {"name": "features", "type": {"type": "record", "name": "Features",
                 "fields": [{"name": "amount", "type": "double"}, ...]}}]}

It decodes into the same record a generic payload gives (``features`` a dict of name to
value), so nothing after the codec knows which one was written; both may share a topic.
Each typed FeatureEvent has a typed ``FeedbackEvent`` derived from it (:func:`feedback_schema`:
the generic FeedbackEvent with the same features record, in the same namespace), which the
joiner writes when it joins such features (its bytes spliced, never decoded) and which
decodes, like the typed FeatureEvent, into the generic record's shape. Readers of the
feedback (monitor, learner, retrainer) therefore need the same ``RIVEROPS_FEATURE_SCHEMAS``.
The schema is a schema like any other: its own Confluent subject
(``riverops.features.fraud.FeatureEvent``), evolved by the usual rules (add a field with a
default, never change a type). With the single-object encoding, writers and readers find
it in the folder of ``RIVEROPS_FEATURE_SCHEMAS``: ``MODEL.avsc`` the one written now, and
``previous/*.avsc`` earlier versions still readable.

Examples
--------
>>> schema = feature_schema("fraud", {"amount": "double", "mcc": "string"}, nullable={"mcc"})
>>> schema["namespace"], [f["name"] for f in schema["fields"][4]["type"]["fields"]]
('riverops.features.fraud', ['amount', 'mcc'])
>>> typed_features(schema)
True
>>> feedback = feedback_schema(schema, {"type": "record", "name": "FeedbackEvent",
...     "fields": [{"name": "event_id", "type": "string"},
...                {"name": "features", "type": {"type": "map", "values": "double"}}]})
>>> feedback["namespace"], typed_feedback(feedback), feedback["fields"][1]["type"]["name"]
('riverops.features.fraud', True, 'Features')
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from riverops.schemas.errors import ConfigError

__all__ = ["FEATURE_TYPES", "feature_schema", "typed_features", "typed_feedback",
           "feedback_schema", "check_feature_schema", "load_feature_schemas"]

FEATURE_TYPES = ("double", "float", "long", "int", "boolean", "string")
"""The Avro types a typed feature may have (or a union of ``null`` and one of them)."""

# the fields a FeatureEvent has besides its features, as in schemas/avro/FeatureEvent.avsc
_HEADER_FIELDS: tuple[dict[str, Any], ...] = (
    {"name": "event_id", "type": "string"},
    {"name": "model", "type": "string"},
    {"name": "entity_id", "type": "string"},
    {"name": "event_time", "type": {"type": "long", "logicalType": "timestamp-millis"}},
)
_AVRO_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def feature_schema(model: str, features: Mapping[str, str], *,
                   nullable: Collection[str] = ()) -> dict[str, Any]:
    """The typed FeatureEvent schema of ``model``: ``features`` maps each feature name to
    one of :data:`FEATURE_TYPES`; the ``nullable`` ones may be null and default to null."""
    unknown = set(nullable) - set(features)
    if unknown:
        raise ConfigError(f"nullable features {sorted(unknown)} are not among the features")
    fields = []
    for name, kind in features.items():
        if name in nullable:
            fields.append({"name": name, "type": ["null", kind], "default": None})
        else:
            fields.append({"name": name, "type": kind})
    namespace = "riverops.features." + re.sub(r"[^A-Za-z0-9_]", "_", model)
    schema = {
        "type": "record", "name": "FeatureEvent", "namespace": namespace,
        "doc": f"Features of one event for model {model}, as typed fields.",
        "fields": [*_HEADER_FIELDS, {"name": "features", "type": {
            "type": "record", "name": "Features", "fields": fields}}],
    }
    check_feature_schema(schema)
    return schema


def typed_features(schema: Mapping[str, Any]) -> bool:
    """Whether ``schema`` is a typed FeatureEvent (its ``features`` field a record)."""
    return _typed(schema, "FeatureEvent")


def typed_feedback(schema: Mapping[str, Any]) -> bool:
    """Whether ``schema`` is a typed FeedbackEvent (its ``features`` field a record)."""
    return _typed(schema, "FeedbackEvent")


def _typed(schema: Mapping[str, Any], name: str) -> bool:
    if schema.get("name") != name or not isinstance(schema.get("fields"), list):
        return False
    features = next((f for f in schema["fields"] if f.get("name") == "features"), None)
    kind = features.get("type") if isinstance(features, Mapping) else None
    return isinstance(kind, Mapping) and kind.get("type") == "record"


def feedback_schema(features: Mapping[str, Any], feedback: Mapping[str, Any]) -> dict[str, Any]:
    """The typed FeedbackEvent of the typed FeatureEvent ``features``: the generic
    FeedbackEvent schema ``feedback`` with the typed features record, in the feature
    schema's namespace (so one model's typed feedback has its own name and fingerprint)."""
    check_feature_schema(features)
    record = next(f for f in features["fields"] if f.get("name") == "features")["type"]
    fields = [{**field, "type": record} if field.get("name") == "features" else field
              for field in feedback["fields"]]
    derived = {**feedback, "fields": fields,
               "doc": f"FeedbackEvent with the typed features of {features.get('namespace')}."}
    derived.pop("namespace", None)
    if features.get("namespace"):
        derived["namespace"] = features["namespace"]
    return derived


def check_feature_schema(schema: Mapping[str, Any]) -> None:
    """Raise ConfigError, saying what is wrong, unless ``schema`` is a typed FeatureEvent."""
    if not typed_features(schema):
        raise ConfigError("a typed feature schema is a record named FeatureEvent whose "
                          "'features' field is a record")
    fields = schema["fields"]
    header = [f for f in fields if f.get("name") != "features"]
    expected = [{"name": f["name"], "type": f["type"]} for f in _HEADER_FIELDS]
    if [{"name": f.get("name"), "type": f.get("type")} for f in header] != expected:
        raise ConfigError(f"{schema.get('namespace')}.FeatureEvent: the fields besides "
                          f"'features' must be {[f['name'] for f in _HEADER_FIELDS]}, as in the "
                          "generic FeatureEvent (event_time a timestamp-millis long)")
    features = next(f for f in fields if f.get("name") == "features")["type"]
    if not features.get("fields"):
        raise ConfigError(f"{schema.get('namespace')}.FeatureEvent declares no features")
    for field in features["fields"]:
        name, kind = field.get("name", ""), field.get("type")
        if not _AVRO_NAME.fullmatch(str(name)):
            raise ConfigError(f"feature {name!r} is not an Avro field name "
                              "([A-Za-z_][A-Za-z0-9_]*)")
        plain = kind[1] if isinstance(kind, list) and len(kind) == 2 and kind[0] == "null" else kind
        if plain not in FEATURE_TYPES:
            raise ConfigError(f"feature {name!r} has type {json.dumps(kind)}; a typed feature is "
                              f"one of {list(FEATURE_TYPES)}, or a union of null and one of them")


def load_feature_schemas(folder: Path) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """The typed feature schemas of ``folder``: ({model: the schema written now}, [earlier
    versions]); ``MODEL.avsc`` files are the current ones, ``previous/*.avsc`` the others."""
    if not folder.is_dir():
        raise ConfigError(f"RIVEROPS_FEATURE_SCHEMAS={folder}: not a folder")
    current = {path.stem: _read(path) for path in sorted(folder.glob("*.avsc"))}
    previous = [_read(path) for path in sorted((folder / "previous").glob("*.avsc"))]
    return current, previous


def _read(path: Path) -> dict[str, Any]:
    try:
        schema = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"feature schema {path}: {exc}") from exc
    try:
        check_feature_schema(schema)
    except ConfigError as exc:
        raise ConfigError(f"feature schema {path}: {exc}") from exc
    return dict(schema)
