"""``riverops settings``: every setting with its environment variable, value and meaning.

The rows come from the :class:`~riverops.settings.Settings` model itself (its fields and
the role sections of :mod:`riverops.sections`, walked recursively), so a new setting is
listed, with its variable, the moment it is declared. Secrets are shown masked.

Examples
--------
>>> rows = {row.name: row for row in setting_rows(Settings(retrainer={"policy": {"margin": 0.05}}))}
>>> rows["retrainer.policy.margin"].env, rows["retrainer.policy.margin"].value
(('RIVEROPS_RETRAINER__POLICY__MARGIN',), 0.05)
>>> rows["bootstrap_servers"].env
('RIVEROPS_BOOTSTRAP_SERVERS', 'KAFKA_BOOTSTRAP_SERVERS')
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import asdict, dataclass
from typing import Any

import click
from annotated_types import Ge, Gt, Le, Lt
from pydantic import AliasChoices, BaseModel, SecretStr
from pydantic.fields import FieldInfo
from rich.console import Console
from rich.table import Table

from riverops.cli.common import settings_from
from riverops.settings import Settings

__all__ = ["SettingRow", "setting_rows", "settings_command"]

MASK = "**********"


@dataclass(frozen=True)
class SettingRow:
    """One setting: dotted name, the environment variables that set it, its current and
    default values (JSON-ready, secrets masked), its type and its description."""

    name: str
    env: tuple[str, ...]
    value: Any
    default: Any
    type: str
    description: str


def setting_rows(settings: Settings) -> list[SettingRow]:
    """Every leaf setting of ``settings``, in declaration order."""
    config = Settings.model_config
    prefix = str(config.get("env_prefix", ""))
    delimiter = str(config.get("env_nested_delimiter") or "__")
    return list(_rows(settings, Settings.model_fields, (), prefix, delimiter))


def _rows(model: BaseModel, fields: dict[str, FieldInfo], path: tuple[str, ...], prefix: str,
          delimiter: str) -> typing.Iterator[SettingRow]:
    for name, info in fields.items():
        here = (*path, name)
        value = getattr(model, name)
        if isinstance(value, BaseModel):  # a role section: its knobs one level deeper
            yield from _rows(value, type(value).model_fields, here, prefix, delimiter)
            continue
        yield SettingRow(
            name=".".join(here), env=_env_names(info, here, prefix, delimiter),
            value=_shown(value), default=_shown(info.get_default(call_default_factory=True)),
            type=_type_name(info), description=info.description or "",
        )


def _env_names(info: FieldInfo, path: tuple[str, ...], prefix: str, delimiter: str) -> tuple[str, ...]:
    # a validation alias replaces the prefixed name (pydantic-settings reads the aliases
    # as environment variables); the lower-case choice is the keyword argument
    alias = info.validation_alias
    if len(path) == 1 and isinstance(alias, AliasChoices):
        return tuple(c for c in alias.choices if isinstance(c, str) and c.isupper())
    if len(path) == 1 and isinstance(alias, str):
        return (alias.upper(),)
    return ((prefix + delimiter.join(path)).upper(),)


def _shown(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return MASK if value.get_secret_value() else ""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _type_name(info: FieldInfo) -> str:
    name = _annotation_name(info.annotation)
    bounds = []
    for item in info.metadata:
        if isinstance(item, Ge):
            bounds.append(f">= {item.ge}")
        elif isinstance(item, Gt):
            bounds.append(f"> {item.gt}")
        elif isinstance(item, Le):
            bounds.append(f"<= {item.le}")
        elif isinstance(item, Lt):
            bounds.append(f"< {item.lt}")
    return " ".join([name, *bounds])


def _annotation_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " | ".join(str(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        parts = [_annotation_name(a) for a in typing.get_args(annotation) if a is not type(None)]
        return " or ".join(parts) + " (optional)"
    if annotation is SecretStr:
        return "secret"
    return getattr(annotation, "__name__", str(annotation)).lower()


@click.command("settings")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts: a list of "
              "{name, env, value, default, type, description}.")
@click.pass_context
def settings_command(ctx: click.Context, as_json: bool) -> None:
    """Every setting: its environment variable(s), current value (secrets masked), default,
    type and meaning. Values come from RIVEROPS_* variables and the global options;
    role knobs are RIVEROPS_ROLE__KNOB (RIVEROPS_RETRAINER__POLICY__MARGIN one deeper)."""
    rows = setting_rows(settings_from(ctx))
    if as_json:
        click.echo(json.dumps([asdict(row) for row in rows], indent=2))
        return
    table = Table(title="riverops settings (* differs from the default)", title_justify="left")
    table.add_column("environment variable", no_wrap=True)
    for column in ("value", "type", "description"):
        table.add_column(column, overflow="fold")
    for row in rows:
        changed = "*" if row.value != row.default else ""
        table.add_row("\n".join(row.env), f"{changed}{_text(row.value)}", row.type, row.description)
    Console(width=max(Console().width, 140)).print(table)


def _text(value: Any) -> str:
    return "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
