"""``python -m bench``: run every benchmark and write bench/results/ (see bench.run)."""

from bench.run import main

main()
