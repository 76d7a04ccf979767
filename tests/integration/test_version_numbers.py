"""Two writers in one process (the learner and the retrainer of `worker all`) never take
the same version number."""

from __future__ import annotations

import threading

from riverops.kafka.registry_topic import (
    RegistryFollower,
    choosing_version,
    publish_records,
    read_registry,
)
from riverops.modelops import register_trained
from riverops.models.registry import Registry
from riverops.models.specs import get_spec
from riverops.settings import Settings

EACH = 6


def _writer(settings: Settings, name: str, start: threading.Barrier, errors: list[BaseException]) -> None:
    registry, follower = Registry(), RegistryFollower(settings)
    try:
        follower.read_to_end(registry)
        start.wait()
        for i in range(EACH):
            with choosing_version(registry, follower):
                records = register_trained(settings, registry, "m", get_spec("logreg").build(seed=i),
                                           spec_name="logreg", stage="candidate", by=name,
                                           reason=f"{name} {i}")
                publish_records(settings, records)
                registry.apply_all(records)
    except BaseException as exc:
        errors.append(exc)
    finally:
        follower.close()


def test_concurrent_writers_take_distinct_version_numbers(loop_settings: Settings) -> None:
    start, errors = threading.Barrier(2), []
    threads = [threading.Thread(target=_writer, args=(loop_settings, name, start, errors))
               for name in ("learner", "retrainer")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    versions = read_registry(loop_settings).versions("m")
    assert [v.version for v in versions] == list(range(1, 2 * EACH + 1))
    assert sorted(v.changed_by for v in versions) == ["learner"] * EACH + ["retrainer"] * EACH
