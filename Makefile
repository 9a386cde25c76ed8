# The two front-door commands: `make train` and `make test`. Both build .venv on first use.
PYTHON ?= python3
VENV ?= .venv
# A CPU build of torch; override for another build, e.g. make TORCH_SPEC='torch==2.14.1' test
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup train test test-slow lint format bench mutation clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet '$(TORCH_SPEC)'
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

train: $(STAMP)
	$(BIN)/rlgumbel-train $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# ruff's lint rules and formatting ([tool.ruff] in pyproject.toml); `make format` rewrites.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/selectors_micro.py
	$(BIN)/python benchmarks/update_overhead.py
	$(BIN)/python benchmarks/random_returns.py
	$(BIN)/python benchmarks/suite.py --envs cartpole acrobot mountain_car
	$(BIN)/python benchmarks/report_speed.py
	$(BIN)/python benchmarks/sweep_speed.py

# Mutation testing of the learning rule and the selectors ([tool.mutmut] in pyproject.toml);
# resumable: a second run retests only what changed. Several hours on 2 cores.
MUTATION_JOBS ?= 2
mutation: $(STAMP)
	$(BIN)/pip install --quiet 'mutmut>=3.8'
	$(BIN)/mutmut run --max-children $(MUTATION_JOBS)
	$(BIN)/mutmut export-cicd-stats
	$(BIN)/mutmut results

clean:
	rm -rf $(VENV) runs multirun outputs mutants
