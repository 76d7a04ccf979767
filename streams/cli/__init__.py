"""The ``riverops`` command line."""

from riverops.cli.main import main

__all__ = ["main"]
