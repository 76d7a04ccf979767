"""Two writers in one process (the learner and the retrainer of `worker all`), each with
its own live registry, never take the same version number, under either guarantee: the
in-process lock of publish_change (and, under exactly_once, the shared transactional id)."""

from __future__ import annotations

import threading

import pytest

from riverops.kafka.registry_topic import RegistryFollower, publish_change, read_registry
from riverops.modelops import register_trained
from riverops.models.registry import Registry
from riverops.models.specs import get_spec
from riverops.schemas.events import ModelVersion
from riverops.settings import ProcessingGuarantee, Settings

from ..conftest import ENGINE

EACH = 6


def _writer(settings: Settings, name: str, start: threading.Barrier, errors: list[BaseException]) -> None:
    registry, follower = Registry(), RegistryFollower(settings)
    try:
        follower.read_to_end(registry)
        start.wait()
        for i in range(EACH):
            def build(r: Registry, i: int = i) -> list[ModelVersion]:
                return register_trained(settings, r, "m", get_spec("logreg").build(seed=i),
                                        spec_name="logreg", stage="candidate", by=name,
                                        reason=f"{name} {i}")
            publish_change(settings, build, registry=registry, follower=follower)
    except BaseException as exc:
        errors.append(exc)
    finally:
        follower.close()


@pytest.mark.parametrize("guarantee", ["exactly_once", "at_least_once"])
def test_concurrent_writers_take_distinct_version_numbers(loop_settings: Settings,
                                                           guarantee: ProcessingGuarantee) -> None:
    if guarantee == "exactly_once" and ENGINE != "kafka":
        pytest.skip("transactions need Apache Kafka")
    settings = loop_settings.model_copy(update={"processing_guarantee": guarantee})
    start, errors = threading.Barrier(2), []
    threads = [threading.Thread(target=_writer, args=(settings, name, start, errors))
               for name in ("learner", "retrainer")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    versions = read_registry(settings).versions("m")
    assert [v.version for v in versions] == list(range(1, 2 * EACH + 1))
    assert sorted(v.changed_by for v in versions) == ["learner"] * EACH + ["retrainer"] * EACH
