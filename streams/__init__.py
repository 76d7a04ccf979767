"""riverops: event-driven streaming MLOps on Kafka with River.

The folders of the repository are the packages of ``riverops``:

- ``streams/`` is ``riverops`` itself: settings, telemetry, the worker runtime, and
  ``riverops.kafka`` (clients, topics, outbox, dead letters, brokers), ``riverops.roles``
  (one module per stream processor, its pure core and its spec), ``riverops.cli`` and
  ``riverops.demo``;
- ``schemas/`` is ``riverops.schemas``: the Avro contracts, their pydantic mirrors, codecs;
- ``models/`` is ``riverops.models``: River model specs, signed artifacts, the registry.
"""

from importlib import metadata

try:
    __version__ = metadata.version("riverops")
except metadata.PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["__version__"]
