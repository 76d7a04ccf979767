"""What every ``riverops`` command shares: the one Settings of the invocation, the broker
check that makes a command fail fast, and the turning of errors into one line.

Commands that talk to the broker call :func:`broker_settings` first: it builds the
settings once per invocation (cached in the click context), asks the broker for its
metadata with a short timeout, and when no answer comes stops the command with one line,
``Error: cannot reach the broker at HOST:PORT ...``, and exit status 1, instead of
librdkafka's reconnect log lines for the length of every timeout of the command.
The group (``riverops.cli.main``) and the command modules import this module, never
each other.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import click
from confluent_kafka import KafkaError, KafkaException
from pydantic import ValidationError

from riverops.kafka.clients import KAFKA_LOG, make_admin, raise_if_refused
from riverops.kafka.tansu import TANSU_CLUSTER_ID
from riverops.schemas.errors import RiveropsError
from riverops.settings import Settings

__all__ = ["CliOptions", "DEFAULT_CONNECT_TIMEOUT", "settings_from", "broker_settings", "admin_client",
           "check_broker", "cli_errors", "for_broker", "cluster_id_of"]

DEFAULT_CONNECT_TIMEOUT = 5.0
log = logging.getLogger(__name__)
"""Seconds a command waits for the broker's first answer before it gives up."""

_OPTIONS = "riverops.options"
_SETTINGS = "riverops.settings"
_CHECKED = "riverops.broker-checked"


@dataclass(frozen=True)
class CliOptions:
    """The group's options that are not settings (kept in ``ctx.meta``; ``ctx.obj`` holds
    the settings overrides: bootstrap servers and topic prefix)."""

    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    verbose: bool = False

    def store(self, ctx: click.Context) -> None:
        """Make these the options of every command of this invocation."""
        ctx.meta[_OPTIONS] = self

    @classmethod
    def of(cls, ctx: click.Context) -> CliOptions:
        """The options of this invocation (the defaults outside the ``riverops`` group)."""
        found = ctx.meta.get(_OPTIONS)
        return found if isinstance(found, CliOptions) else cls()


def settings_from(ctx: click.Context) -> Settings:
    """The settings of this invocation: environment plus the global options, built once."""
    cached = ctx.meta.get(_SETTINGS)
    if isinstance(cached, Settings):
        return cached
    overrides: dict[str, Any] = ctx.find_root().obj or {}
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    except (ValidationError, RiveropsError) as exc:
        raise click.UsageError(f"bad settings: {exc}") from exc
    ctx.meta[_SETTINGS] = settings
    return settings


def broker_settings(ctx: click.Context) -> Settings:
    """The settings, once the broker they name answered (else the command stops, saying so).

    Also keeps librdkafka's own log lines out of the terminal unless ``--verbose``: the
    command reports what went wrong itself.
    """
    options = CliOptions.of(ctx)
    if options.verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        KAFKA_LOG.setLevel(logging.NOTSET)
    else:
        KAFKA_LOG.setLevel(logging.CRITICAL)
    settings = settings_from(ctx)
    if not ctx.meta.get(_CHECKED):
        cluster_id = check_broker(settings, timeout=options.connect_timeout)
        settings = ctx.meta[_SETTINGS] = for_broker(settings, cluster_id)
        ctx.meta[_CHECKED] = True
    return settings


def for_broker(settings: Settings, cluster_id: str | None) -> Settings:
    """``settings`` for the broker whose metadata said ``cluster_id``: exactly_once is the
    default, but the embedded broker cannot do transactions, so there the default is
    at_least_once (said in one line); a guarantee set explicitly is kept either way."""
    if cluster_id != TANSU_CLUSTER_ID or "processing_guarantee" in settings.model_fields_set:
        return settings
    log.warning("the embedded broker cannot do transactions: processing guarantee at_least_once "
                "(RIVEROPS_PROCESSING_GUARANTEE chooses explicitly)")
    return settings.model_copy(update={"processing_guarantee": "at_least_once"})


def cluster_id_of(settings: Settings, *, timeout: float = DEFAULT_CONNECT_TIMEOUT) -> str | None:
    """The cluster id the broker reports, None when it does not answer in time."""
    try:
        return make_admin(settings).list_topics(timeout=timeout).cluster_id
    except KafkaException:
        return None


def admin_client(settings: Settings) -> Any:
    """An AdminClient for a one-shot command (its log lines through Python logging)."""
    return make_admin(settings)


def check_broker(settings: Settings, *, timeout: float = DEFAULT_CONNECT_TIMEOUT) -> str | None:
    """Return the cluster id when the broker answers a metadata request within ``timeout`` seconds.

    Otherwise raise a ClickException naming the address and the client's last error; a
    broker that refused the credentials raises AuthorizationError (as a ClickException):
    retrying would not help either way.
    """
    errors: list[KafkaError] = []
    admin = make_admin(settings, error_cb=errors.append)
    try:
        return admin.list_topics(timeout=timeout).cluster_id
    except KafkaException as exc:
        failure = exc.args[0]
    admin.poll(0)  # serve the queued error callbacks: they say why
    try:
        for error in errors:
            raise_if_refused(error, f"the connection to {settings.bootstrap_servers}")
    except RiveropsError as exc:
        raise click.ClickException(str(exc)) from exc
    causes = [e.str() for e in errors if e.code() != KafkaError._ALL_BROKERS_DOWN]
    cause = causes[-1] if causes else (failure.str() if isinstance(failure, KafkaError) else str(failure))
    raise click.ClickException(
        f"cannot reach the broker at {settings.bootstrap_servers} within {timeout:g}s ({cause}); "
        "start one (riverops broker) or point -b / RIVEROPS_BOOTSTRAP_SERVERS at it"
    )


@contextmanager
def cli_errors() -> Iterator[None]:
    """Turn riverops and Kafka errors inside a command into one ``Error: ...`` line and
    exit status 1, instead of a traceback."""
    try:
        yield
    except RiveropsError as exc:
        raise click.ClickException(str(exc)) from exc
    except KafkaException as exc:
        error = exc.args[0] if exc.args else exc
        raise click.ClickException(
            f"kafka: {error.str() if isinstance(error, KafkaError) else error}"
        ) from exc
