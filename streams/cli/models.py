"""``riverops models``: the registry from the command line; every change names who and why."""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Any, cast

import click
from rich.console import Console
from rich.table import Table

from riverops.cli.common import broker_settings, cli_errors
from riverops.kafka.registry_topic import RegistryChange, publish_change, read_registry
from riverops.models.registry import Registry
from riverops.schemas.errors import ConfigError
from riverops.schemas.events import ModelVersion, Stage
from riverops.settings import Settings

__all__ = ["models_group", "parse_params"]


def parse_params(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``--param name=value`` pairs as a dict; a value is read as JSON when it parses
    (``0.05``, ``true``, ``null``, ``"nba"``), else taken as a string (``nba``).

    >>> parse_params(("grace_period=50", "delta=1e-5", "leaf_prediction=mc", "flag=true"))
    {'grace_period': 50, 'delta': 1e-05, 'leaf_prediction': 'mc', 'flag': True}
    """
    params: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--param")
        try:
            value = json.loads(text)
        except ValueError:
            value = text
        if not (value is None or isinstance(value, bool | int | float | str)):
            raise click.BadParameter(f"{name}: a param is a number, a boolean, a string or null, "
                                     f"not {text}", param_hint="--param")
        params[name] = value
    return params


class _ZooHelp(click.Command):
    """A command whose help ends with the model zoo: its specs, tasks and params. Built
    when help is asked for, so that other commands do not pay for importing River."""

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        from riverops.models.specs import ZOO

        with formatter.section("Specs (--spec) and their params (--param NAME=VALUE, defaults)"):
            formatter.write_dl([
                (name, f"{ZOO[name].task}: {ZOO[name].description}; "
                       + ", ".join(f"{k}={v}" for k, v in sorted(ZOO[name].params.items())))
                for name in sorted(ZOO)
            ])


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _publish(settings: Settings, build: RegistryChange) -> None:
    """Publish the change ``build`` makes of the registry as it is when published (built
    again if another writer got in first: see riverops.kafka.registry_topic.publish_change)."""
    for record in publish_change(settings, build):
        click.echo(f"{record.model}:{record.version} -> {record.stage} ({record.reason})")


def _registry(ctx: click.Context) -> tuple[Settings, Registry]:
    settings = broker_settings(ctx)
    with cli_errors():
        return settings, read_registry(settings)


@click.group("models")
def models_group() -> None:
    """List, inspect and change model versions in the registry topic."""


@models_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def list_versions(ctx: click.Context, as_json: bool) -> None:
    """Every model version with its stage, share and key metrics."""
    _, registry = _registry(ctx)
    rows = [v for m in registry.models for v in registry.versions(m)]
    if as_json:
        click.echo(json.dumps([_summary(v) for v in rows], indent=2))
        return
    table = Table(title="model registry")
    for column in ("model", "version", "stage", "share", "spec", "samples", "metrics", "changed by", "reason"):
        table.add_column(column)
    for v in rows:
        metrics = ", ".join(f"{k}={x:.3f}" for k, x in sorted(v.metrics.items())[:3])
        table.add_row(
            v.model, str(v.version), v.stage, f"{v.share:.2f}" if v.share else "", v.spec,
            str(v.lineage.samples), metrics, v.changed_by, v.reason,
        )
    Console().print(table)


def _summary(v: ModelVersion) -> dict[str, Any]:
    data = v.model_dump(mode="json", exclude={"artifact"})
    data["artifact"] = {"uri": v.artifact.uri, "inline": v.artifact.inline is not None,
                        "sha256": v.artifact.sha256, "size": v.artifact.size}
    return data


@models_group.command("show")
@click.argument("model")
@click.argument("version", type=int, required=False)
@click.pass_context
def show(ctx: click.Context, model: str, version: int | None) -> None:
    """One version (default: the champion) with its lineage, as JSON."""
    _, registry = _registry(ctx)
    with cli_errors():
        record = registry.get(model, version) if version else registry.champion(model)
    if record is None:
        raise click.ClickException(f"{model} has no champion")
    click.echo(json.dumps(_summary(record), indent=2))


@models_group.command("register", cls=_ZooHelp)
@click.argument("model")
@click.option("--spec", "spec_name", default="logreg", show_default=True, metavar="SPEC",
              help="Model spec from the zoo (listed below).")
@click.option("--param", "param_pairs", multiple=True, metavar="NAME=VALUE",
              help="A hyperparameter over the spec's default (repeatable); VALUE is read as "
              "JSON when it parses, else as a string.")
@click.option("--stage", type=click.Choice(["candidate", "champion", "challenger", "shadow"]),
              default="candidate", show_default=True)
@click.option("--share", type=float, help="Traffic share of a challenger (0..1).")
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--train", "train_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="CSV/Parquet with feature columns and a label column to train on first.")
@click.option("--label-column", default="label", show_default=True)
@click.option("--reason", default="registered by hand", show_default=True)
@click.pass_context
def register(
    ctx: click.Context, model: str, spec_name: str, param_pairs: tuple[str, ...], stage: str,
    share: float | None, seed: int, train_file: Path | None, label_column: str, reason: str,
) -> None:
    """Build a model from a spec (optionally trained on a file) and register it.

    The spec and its params are checked before the broker is asked anything.
    """
    from riverops.modelops import build_and_register
    from riverops.models.specs import get_spec

    params = parse_params(param_pairs)
    try:
        get_spec(spec_name).build(seed=seed, **params)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--spec/--param") from exc
    settings = broker_settings(ctx)
    with cli_errors():
        _publish(settings, lambda registry: build_and_register(
            settings, registry, model, spec_name=spec_name, stage=stage, share=share, seed=seed,
            train_file=train_file, label_column=label_column, by=_who(), reason=reason,
            params=params,
        ))


def _change(ctx: click.Context, build: RegistryChange) -> None:
    settings = broker_settings(ctx)
    with cli_errors():
        _publish(settings, build)


@models_group.command("promote")
@click.argument("model")
@click.argument("version", type=int)
@click.option("--reason", required=True, help="Why (kept in the registry record).")
@click.pass_context
def promote(ctx: click.Context, model: str, version: int, reason: str) -> None:
    """Make VERSION the champion (the old champion is archived)."""
    _change(ctx, lambda r: r.promote(model, version, by=_who(), reason=reason))


@models_group.command("rollback")
@click.argument("model")
@click.option("--reason", required=True)
@click.pass_context
def rollback(ctx: click.Context, model: str, reason: str) -> None:
    """Reject the champion and restore the previous one."""
    _change(ctx, lambda r: r.rollback(model, by=_who(), reason=reason))


@models_group.command("archive")
@click.argument("model")
@click.argument("version", type=int)
@click.option("--reason", required=True)
@click.pass_context
def archive(ctx: click.Context, model: str, version: int, reason: str) -> None:
    """Stop serving VERSION (it stays in the registry)."""
    _change(ctx, lambda r: r.set_stage(model, version, "archived", by=_who(), reason=reason))


@models_group.command("stage")
@click.argument("model")
@click.argument("version", type=int)
@click.argument("stage", type=click.Choice(["candidate", "challenger", "shadow", "archived"]))
@click.option("--share", type=float, help="Traffic share for a challenger (0..1).")
@click.option("--reason", required=True)
@click.pass_context
def stage(ctx: click.Context, model: str, version: int, stage: str, share: float | None, reason: str) -> None:
    """Move VERSION to challenger (with --share), shadow, candidate or archived."""
    _change(ctx, lambda r: r.set_stage(model, version, cast(Stage, stage), by=_who(), reason=reason,
                                       share=share))
