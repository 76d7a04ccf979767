"""Labels and scores as every processor reads them: one place, so they cannot disagree.

Examples
--------
>>> coerce_label("binary", 1.0), coerce_label("multiclass", "cat"), coerce_label("regression", 2)
(True, 'cat', 2.0)
>>> positive_score({"True": 0.8, "False": 0.2}), positive_score({"0": 0.25}), positive_score({})
(0.8, 0.75, None)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from riverops.schemas.errors import InvalidEventError
from riverops.schemas.events import Task

__all__ = ["coerce_label", "positive_score"]

_TRUE = {"true": True, "1": True, "1.0": True, "false": False, "0": False, "0.0": False}


def coerce_label(task: Task, label: Any) -> Any:
    """The label as a model of ``task`` learns it: a bool (binary; 0/1 and true/false
    accepted), a str (multiclass) or a finite float (regression); InvalidEventError
    otherwise."""
    if task == "binary":
        if isinstance(label, bool | np.bool_):
            return bool(label)
        if isinstance(label, int | float) and label in (0, 1):
            return bool(label)
        if isinstance(label, str) and label.lower() in _TRUE:
            return _TRUE[label.lower()]
        raise InvalidEventError(f"not a binary class: {label!r}")
    if task == "multiclass":
        if label is None:
            raise InvalidEventError("no class label")
        return str(label)
    if isinstance(label, bool) or not isinstance(label, int | float) or not math.isfinite(label):
        raise InvalidEventError(f"not a finite regression target: {label!r}")
    return float(label)


def positive_score(scores: Mapping[str, float]) -> float | None:
    """P(True) from a scores map keyed by ``str(class)`` (True/1/1.0, else 1 - False/0/0.0);
    None when the map has neither."""
    for name in ("True", "1", "1.0"):
        if name in scores and math.isfinite(scores[name]):
            return float(scores[name])
    for name in ("False", "0", "0.0"):
        if name in scores and math.isfinite(scores[name]):
            return 1.0 - float(scores[name])
    return None
