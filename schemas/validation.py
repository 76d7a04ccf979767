"""The one rule for what a feature map must be, beyond what its Avro schema says.

The scorer, the learner, the online role and the retrainer all hold features to it, so a
NaN that the scorer refuses is not learned from either (a NaN in a linear model's update
turns every weight into NaN).

Examples
--------
>>> validate_features({"event_id": "e-1", "model": "fraud", "features": {"amount": 3.0}})
>>> validate_features({"event_id": "e-1", "model": "fraud", "features": {"amount": float("nan")}})
Traceback (most recent call last):
...
riverops.schemas.errors.InvalidEventError: feature 'amount' is nan, not a finite number
>>> check_feature_map([1.0])
Traceback (most recent call last):
...
riverops.schemas.errors.InvalidEventError: features are a list, not a map
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from riverops.schemas.errors import InvalidEventError

__all__ = ["MAX_FEATURES", "MAX_STRING", "validate_features", "check_feature_map", "not_finite",
           "string_too_long", "too_many_features"]

MAX_FEATURES = 10_000
MAX_STRING = 4_096


def validate_features(record: Mapping[str, Any]) -> None:
    """Raise InvalidEventError for an event (features or feedback) whose ids or features
    the Avro schema alone lets through (or that is not shaped as the schema says: a
    refusal, never a TypeError, whoever built the record)."""
    if type(record) is not dict and not isinstance(record, Mapping):
        raise InvalidEventError(f"a {type(record).__name__}, not a record")
    if not record.get("event_id"):
        raise InvalidEventError("empty event_id")
    if not record.get("model"):
        raise InvalidEventError("empty model name")
    if not isinstance(record["event_id"], str) or not isinstance(record["model"], str):
        raise InvalidEventError("event_id and model must be strings")
    check_feature_map(record.get("features"))


def check_feature_map(features: object) -> None:
    """Raise InvalidEventError for what is not a map, too many features, a non-finite
    number or a huge string."""
    if type(features) is not dict and not isinstance(features, Mapping):
        raise InvalidEventError(f"features are a {type(features).__name__}, not a map")
    if len(features) > MAX_FEATURES:
        raise too_many_features(len(features))
    # fast path, one C-level pass: a NaN or an infinity makes the sum non-finite, so a finite
    # sum of numbers clears every value; strings and None raise TypeError and take the
    # loop below, and so does a sum that overflowed (the loop then finds nothing)
    try:
        if math.isfinite(sum(features.values())):
            return
    except (TypeError, OverflowError):
        pass
    for name, value in features.items():
        if type(value) is float and not math.isfinite(value):
            raise not_finite(name, value)
        if type(value) is str and len(value) > MAX_STRING:
            raise string_too_long(name, len(value))


# the rule's refusals, worded once (the joiner's splice finds them on the bytes)
def too_many_features(count: int) -> InvalidEventError:
    return InvalidEventError(f"{count} features, more than {MAX_FEATURES}")


def not_finite(name: str, value: float) -> InvalidEventError:
    return InvalidEventError(f"feature {name!r} is {value}, not a finite number")


def string_too_long(name: str, chars: int) -> InvalidEventError:
    return InvalidEventError(f"feature {name!r} is a string of {chars} chars")
