# distillwatch — the two commands a new user needs: `make demo` and `make test`.
# `make bench` measures throughput, latency and memory (writes bench/results.json).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench venv clean eval kafka-jars test-kafka system-packages

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	$(BIN)/python -m pipeline.warm_up  # compile the Numba kernels now (about a minute, once), not in the first demo
	touch $(STAMP)

venv: $(STAMP)

# Debian packages the tests run for real: Prometheus and promtool (rules, a scrape of the worker),
# Alertmanager (paging end to end) and Chromium (a look at the HTML report). Installed only when missing.
SYSTEM_PACKAGES := prometheus prometheus-alertmanager chromium
system-packages:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

demo: $(STAMP)
	$(BIN)/distillwatch demo

# Detection quality on a labelled scenario (docs/evaluation.md): `make eval CHECK=1` fails on a missed
# target; EVAL_ARGS passes options, e.g. make eval EVAL_ARGS="--events 300000".
eval: $(STAMP)
	$(BIN)/python -m jobs.cli eval $(if $(CHECK),--check) $(EVAL_ARGS)

bench: $(STAMP)
	$(BIN)/distillwatch bench

lint: $(STAMP)
	$(BIN)/ruff check .

# Two pytest-xdist workers (TEST_WORKERS=0: one process): much of the time goes to tests that wait on
# brokers, workers and receivers. Session and module fixtures are made once per worker that needs them
# (the demo run, measured, on both: xdist 3.8's grouping does not take on pytest 9.2, README "Development").
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -q -n $(TEST_WORKERS)

test: $(STAMP) system-packages lint
	$(PYTEST)

# The Apache Kafka test tier (README "Testing against Apache Kafka"): the broker's jars are fetched once
# with Maven into .distillwatch/kafka-lib/ (never at run time), then the Kafka tests run against a real
# single-node Kafka instead of the embedded Tansu. KAFKA_TESTS selects the tests: every `kafka` test except
# those that run a `distillwatch` command starting its own Tansu (bench, eval, replay without --kafka; the
# demo run's readers are left out by tests/conftest.py), which DW_TEST_BROKER cannot reach.
KAFKA_LIB := $(CURDIR)/.distillwatch/kafka-lib
KAFKA_TESTS ?= -m "kafka" --deselect tests/jobs/test_bench.py --deselect tests/jobs/test_eval_run.py \
	--deselect tests/integration/test_end_to_end.py::test_replay_end_to_end_loses_nothing

$(KAFKA_LIB)/.fetched: infra/kafka/pom.xml
	rm -rf $(KAFKA_LIB)
	mvn -q -B -f infra/kafka/pom.xml dependency:copy-dependencies -DoutputDirectory=$(KAFKA_LIB)
	touch $@

kafka-jars: $(KAFKA_LIB)/.fetched

test-kafka: $(STAMP) kafka-jars
	DW_TEST_BROKER=apache $(PYTEST) $(KAFKA_TESTS)

clean:
	rm -rf $(VENV) .distillwatch .pytest_cache .ruff_cache
