"""``riverops feature-schema MODEL``: a model's typed feature schema, as an ``.avsc`` file.

From ``NAME:TYPE`` arguments, or inferred from the columns of a CSV or Parquet feature file
(the one ``riverops produce features`` reads: every column but event_id, model, entity_id
and event_time is a feature). The schema goes to ``RIVEROPS_FEATURE_SCHEMAS/MODEL.avsc``
(docs/architecture.md, "Typed feature schemas").

Examples
--------
>>> import pandas as pd
>>> inferred(pd.DataFrame({"event_id": ["e1"], "amount": [4.5], "n": [3], "mcc": [None],
...                        "foreign": [True]}))
({'amount': 'double', 'n': 'double', 'mcc': 'string', 'foreign': 'boolean'}, {'mcc'})
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from riverops.schemas.errors import RiveropsError
from riverops.schemas.features import feature_schema

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["feature_schema_command", "inferred"]


def inferred(frame: pd.DataFrame) -> tuple[dict[str, str], set[str]]:
    """(feature name -> Avro type, the nullable ones) from a feature table's columns:
    numbers are doubles (the generic map holds them so), booleans booleans, the rest
    strings; a column with a missing value is nullable."""
    from pandas.api import types  # pandas is slow to import: not for --help

    from riverops.cli.replay import FEATURE_COLUMNS

    features: dict[str, str] = {}
    for column in frame.columns:
        if column in FEATURE_COLUMNS:
            continue
        values = frame[column]
        if types.is_bool_dtype(values):
            features[str(column)] = "boolean"
        elif types.is_numeric_dtype(values):
            features[str(column)] = "double"
        else:
            features[str(column)] = "string"
    nullable = {str(c) for c in features if frame[c].isna().any()}
    return features, nullable


@click.command("feature-schema")
@click.argument("model")
@click.argument("fields", nargs=-1, metavar="[NAME:TYPE]...")
@click.option("--infer", "table", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Infer the features from a CSV or Parquet feature file instead.")
@click.option("--nullable", multiple=True, metavar="NAME",
              help="A feature that may be missing (null; repeatable).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the schema here (e.g. $RIVEROPS_FEATURE_SCHEMAS/MODEL.avsc), "
                   "not to stdout.")
def feature_schema_command(model: str, fields: tuple[str, ...], table: Path | None,
                           nullable: tuple[str, ...], output: Path | None) -> None:
    """Print MODEL's typed feature schema: its features as an Avro record, about half the
    scorer's decode cost of the generic map. TYPE is one of double, float, long, int,
    boolean, string.

    \b
      riverops feature-schema fraud amount:double mcc:string --nullable mcc
      riverops feature-schema fraud --infer features.parquet -o schemas/fraud.avsc
    """
    if bool(fields) == bool(table):
        raise click.UsageError("give either NAME:TYPE arguments or --infer FILE")
    try:
        if table is not None:
            from riverops.cli.replay import read_table

            features, missing = inferred(read_table(table))
        else:
            features, missing = dict(_field(f) for f in fields), set()
        schema = feature_schema(model, features, nullable={*missing, *nullable})
    except RiveropsError as exc:
        raise click.ClickException(str(exc)) from exc
    text = json.dumps(schema, indent=2) + "\n"
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text)
        click.echo(f"wrote {output}: {len(features)} features of {model}", err=True)


def _field(text: str) -> tuple[str, str]:
    name, colon, kind = text.partition(":")
    if not colon or not name:
        raise click.BadParameter(f"{text!r}: expected NAME:TYPE, e.g. amount:double")
    return name, kind
