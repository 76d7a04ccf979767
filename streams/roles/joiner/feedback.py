"""The FeedbackEvent of a complete pending event: the only place the joiner decodes.

A pending event stays encoded until it has its features, its label and a prediction
(see :mod:`riverops.roles.joiner.state`); then its features and label are decoded once,
checked to belong together and held to the one feature rule
(:func:`~riverops.schemas.validation.check_feature_map`), and folded with the compact
predictions into one record. An event that cannot become feedback raises
:class:`Rejected` naming the stored record to dead-letter.
"""

from __future__ import annotations

from typing import Any

from riverops.roles.joiner.state import Item, Stored, decode_compact
from riverops.schemas.codec import Codec
from riverops.schemas.errors import DecodeError, InvalidEventError, RiveropsError
from riverops.schemas.validation import check_feature_map

__all__ = ["Rejected", "feedback_record"]


class Rejected(Exception):
    """A complete event that cannot become feedback, with the record to dead-letter."""

    def __init__(self, stored: Stored, error: RiveropsError) -> None:
        super().__init__(str(error))
        self.stored = stored
        self.error = error


def feedback_record(event_id: str, item: Item, codec: Codec) -> dict[str, Any]:
    """The FeedbackEvent record (ready for ``codec.encode``) of a complete ``item``;
    :class:`Rejected` if its features or label do not decode or do not belong together."""
    assert item.features is not None and item.label is not None
    try:
        features = codec.decode("FeatureEvent", item.features[2])
    except DecodeError as exc:
        raise Rejected(item.features, exc) from exc
    try:
        label = codec.decode("LabelEvent", item.label[2])
    except DecodeError as exc:
        raise Rejected(item.label, exc) from exc
    if features["event_id"] != event_id:
        why = f"features event_id {features['event_id']!r} is not the key {event_id!r}"
        raise Rejected(item.features, InvalidEventError(why))
    try:  # the one feature rule, as the scorer's: a NaN is not passed on to learn from
        check_feature_map(features["features"])
    except InvalidEventError as exc:
        raise Rejected(item.features, exc) from exc
    if label["event_id"] != event_id or label["model"] != features["model"]:
        why = (f"label of {label['event_id']!r} for model {label['model']!r} does not match "
               f"features of {event_id!r} for model {features['model']!r}")
        raise Rejected(item.label, InvalidEventError(why))
    predictions = sorted(item.predictions, key=lambda p: (p[3], p[2]))  # variant, version
    return {
        "event_id": event_id,
        "model": features["model"],
        "entity_id": features["entity_id"],
        "event_time": features["event_time"],
        "features": features["features"],
        "label": label["label"],
        "label_time": label["label_time"],
        "predictions": [decode_compact(p[4]) for p in predictions],
    }
