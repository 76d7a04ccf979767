"""Byte-for-byte artifacts: pin the generators River leaves unseeded in a trained model.

River's tree splitters (``GaussianSplitter``) make a ``proba.Gaussian()`` per class and
feature without a seed, and each holds a ``random.Random`` seeded from the OS, used only
by ``sample()``, which no tree calls. Pickled as is, two identical trees differ in those
states, so :func:`~riverops.roles.retrainer.training.retrain` pins the unseeded
distributions' generators to a fixed seed before it returns: the model learns and
predicts exactly as before, and the same window, spec, params and seed give the same
artifact sha256.

Examples
--------
>>> from river import proba
>>> a, b = proba.Gaussian(), proba.Gaussian()
>>> pin_idle_rngs([a, b])
>>> a._rng.random() == b._rng.random()
True
"""

from __future__ import annotations

import collections
import random
from typing import Any

from river import proba

__all__ = ["pin_idle_rngs"]


def pin_idle_rngs(model: Any) -> None:
    """Seed the generator of every unseeded River distribution in ``model`` with 0.

    They exist for ``sample()``, which learning and prediction never call (see the module
    docstring), so this changes the pickle, not the model's behaviour.
    """
    seen: set[int] = set()
    stack: list[Any] = [model]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or obj is None or isinstance(obj, str | bytes | int | float):
            continue
        seen.add(id(obj))
        if isinstance(obj, proba.base.Distribution) and obj.seed is None:
            obj._rng = random.Random(0)
        if isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, list | tuple | set | frozenset | collections.deque):
            stack.extend(obj)
        elif hasattr(obj, "__dict__") and type(obj).__module__.startswith(("river.", "riverops.models.")):
            stack.extend(vars(obj).values())

