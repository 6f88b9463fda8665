# distillwatch — the two commands a new user needs: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint venv clean eval

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/distillwatch demo

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP) lint
	$(BIN)/python -m pytest -q

# Detection quality on a labelled scenario (docs/evaluation.md): `make eval CHECK=1` fails on a missed
# target; EVAL_ARGS passes options, e.g. make eval EVAL_ARGS="--events 300000".
eval: $(STAMP)
	$(BIN)/python -m jobs.cli eval $(if $(CHECK),--check) $(EVAL_ARGS)

clean:
	rm -rf $(VENV) .distillwatch .pytest_cache .ruff_cache
