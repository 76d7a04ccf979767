"""What the learner learns from: a feedback record with a model, an event id, features
that pass the one feature rule, and a label.

The feature rule is :mod:`riverops.schemas.validation`'s, the scorer's: a NaN or an
infinity the scorer refuses is not learned from either (one NaN in a linear model's
update turns every weight into NaN). Whether the label suits the model's task is checked
later, by :func:`~riverops.models.labels.coerce_label`, once the model is known.

Examples
--------
>>> check_feedback({"model": "fraud", "event_id": "e1", "features": {"x": 1.0}, "label": True})
('fraud', 'e1')
>>> check_feedback({"model": "fraud", "event_id": "e1", "features": {"x": float("nan")},
...                 "label": True})
Traceback (most recent call last):
...
riverops.schemas.errors.InvalidEventError: feature 'x' is nan, not a finite number
>>> check_feedback({"model": "fraud", "event_id": "e1", "features": {"x": float("-inf")},
...                 "label": True})
Traceback (most recent call last):
...
riverops.schemas.errors.InvalidEventError: feature 'x' is -inf, not a finite number
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from riverops.schemas.errors import InvalidEventError
from riverops.schemas.validation import check_feature_map

__all__ = ["check_feedback"]


def check_feedback(record: Any) -> tuple[str, str]:
    """The (model, event_id) of a feedback record the learner may learn from;
    InvalidEventError, saying why, for one it must refuse."""
    if not isinstance(record, Mapping):
        raise InvalidEventError("feedback is not a record")
    model, event_id = record.get("model"), record.get("event_id")
    if not isinstance(model, str) or not model or not isinstance(event_id, str) or not event_id:
        raise InvalidEventError("feedback without a model name or event_id")
    features = record.get("features")
    if not isinstance(features, Mapping):
        raise InvalidEventError("no features map")
    check_feature_map(features)
    if record.get("label") is None:
        raise InvalidEventError(f"feedback {event_id} has no label")
    return model, event_id
