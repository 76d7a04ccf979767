"""The champion the fault tests serve: a logreg for model ``fraud`` trained on Agrawal."""

from __future__ import annotations

from river.datasets import synth

from riverops.kafka.registry_topic import publish_records
from riverops.modelops import register_trained
from riverops.models.batch import learn_in_order
from riverops.models.registry import Registry
from riverops.models.specs import get_spec
from riverops.settings import Settings

__all__ = ["register_champion"]


def register_champion(settings: Settings, *, model: str = "fraud") -> None:
    """Register and publish v1 of ``model`` as champion (signed with the settings' key)."""
    estimator = get_spec("logreg").build(seed=1)
    rows = [(x, bool(y)) for x, y in synth.Agrawal(classification_function=0, seed=1).take(300)]
    learn_in_order(estimator, [x for x, _ in rows], [y for _, y in rows])
    records = register_trained(settings, Registry(), model, estimator, spec_name="logreg",
                               stage="champion", by="test", reason="fault-test champion", seed=1,
                               samples=300)
    publish_records(settings, records)
