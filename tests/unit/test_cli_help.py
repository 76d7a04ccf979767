"""The command explains itself, and its modules import each other without a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

from click.testing import CliRunner

from riverops.cli.main import cli
from riverops.cli.models import parse_params
from riverops.models.specs import ZOO

CLI_DIR = Path(__file__).resolve().parents[2] / "streams" / "cli"


def test_help_lists_the_commands() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for command in ("broker", "topics", "demo", "settings", "status", "tail", "models", "retrain",
                    "--connect-timeout", "--verbose"):
        assert command in result.output


def test_models_register_help_lists_every_spec_with_its_params() -> None:
    result = CliRunner().invoke(cli, ["models", "register", "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "--param NAME=VALUE" in result.output
    for name, spec in ZOO.items():
        assert name in result.output
        for param in spec.params:
            assert f"{param}=" in result.output


def test_tail_help_names_its_options() -> None:
    result = CliRunner().invoke(cli, ["tail", "--help"])
    assert result.exit_code == 0
    for option in ("--from-beginning", "--max", "--timeout", "model-registry"):
        assert option in result.output


def test_params_are_json_when_they_parse_else_strings() -> None:
    assert parse_params(("a=1", "b=0.5", "c=true", "d=null", "e=nba", 'f="1"', "g=x=y")) == {
        "a": 1, "b": 0.5, "c": True, "d": None, "e": "nba", "f": "1", "g": "x=y"}
    for bad in ("novalue", "=3", "a=[1, 2]", 'a={"b": 1}'):
        result = CliRunner().invoke(cli, ["models", "register", "m", "--param", bad])
        assert result.exit_code == 2 and "--param" in result.output, (bad, result.output)


def test_bad_settings_are_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["settings"], env={"RIVEROPS_PARTITIONS": "zero"})
    assert result.exit_code == 2 and "bad settings" in result.output


def _cli_imports(path: Path) -> set[str]:
    """The riverops.cli modules ``path`` imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("riverops.cli"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("riverops.cli")}
    return found


def test_the_cli_modules_import_each_other_without_a_cycle() -> None:
    graph = {f"riverops.cli.{p.stem}": _cli_imports(p) for p in CLI_DIR.glob("*.py") if p.stem != "__init__"}
    assert "riverops.cli.main" in graph and "riverops.cli.common" in graph

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, f"import cycle: {' -> '.join((*path, module))}"
        for imported in graph.get(module, set()):
            visit(imported, (*path, module))

    for module in graph:
        visit(module, ())
    assert not any("riverops.cli.main" in imports for imports in graph.values())
