"""``python -m riverops``: the command line."""

from riverops.cli import main

main()
