"""Calls into librdkafka that may never return, run on a thread of their own and waited
for with a bound (librdkafka issues #5456 and #5511: ``send_offsets_to_transaction``
ignores its timeout while the group coordinator is away)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

__all__ = ["Caller", "Stuck", "STUCK_GRACE_SECONDS"]

STUCK_GRACE_SECONDS = 5.0
"""How long past its own timeout a transactional call may take before it is given up."""


class Stuck(Exception):
    """A librdkafka call that did not return (see riverops.kafka.outbox.TransactionalOutbox)."""


class Caller:
    """A daemon thread that runs the calls handed to it, one at a time. Daemon, and not
    a ThreadPoolExecutor: an executor's threads are joined at interpreter exit, and a call
    blocked in librdkafka for good would keep the worker from exiting."""

    def __init__(self, name: str) -> None:
        self._calls: queue.SimpleQueue[tuple[Callable[[], None], list[BaseException], threading.Event] | None] = (
            queue.SimpleQueue())
        threading.Thread(target=self._serve, name=name, daemon=True).start()

    def _serve(self) -> None:
        while (item := self._calls.get()) is not None:
            call, raised, done = item
            try:
                call()
            except BaseException as exc:  # handed to the waiting caller
                raised.append(exc)
            done.set()

    def run(self, call: Callable[[], None], timeout: float) -> bool:
        """Run ``call``; False when it has not returned within ``timeout`` (it then goes
        on alone), what it raised re-raised here."""
        raised: list[BaseException] = []
        done = threading.Event()
        self._calls.put((call, raised, done))
        if not done.wait(timeout):
            return False
        if raised:
            raise raised[0]
        return True

    def close(self) -> None:
        """Let the thread end after the call it is in, if any."""
        self._calls.put(None)
