# Front doors: `make run` does the whole job, `make test` checks it. `make help` lists the rest.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
SCALE  ?= 500
DB     := db/sqlite/chinook.db
STAMP  := $(VENV)/.installed-stamp

.DEFAULT_GOAL := help
.PHONY: help setup db data process load notebooks run test lint bench lab clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --editable '.[dev]'
	touch $@

setup: $(STAMP) db ## Create .venv, install the project with its dev extras, build the database

db: $(STAMP) ## Build db/sqlite/chinook.db (a no-op when it is already valid)
	$(PY) -m helpers build-db --db $(DB)

data: setup ## Generate raw_data/ (SCALE=500 gives the assessment's counts), with faults
	$(PY) -m helpers make-raw --scale $(SCALE) --out raw_data --db $(DB) --faults

load: setup ## Load processed_data/ into db/sqlite/warehouse.db and reconcile it with Chinook
	$(PY) -m helpers load --processed processed_data --db db/sqlite/warehouse.db --base $(DB)

run: setup ## Everything: setup, database, raw data, ingestion, both notebooks

test: setup ## Set up, then run lint and the whole test suite
	$(BIN)/ruff check helpers tests
	$(BIN)/pytest

lint: $(STAMP) ## ruff over the package and the tests
	$(BIN)/ruff check helpers tests

lab: setup ## Open JupyterLab on the project's environment
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (chinook-helpers)"
	cd notebooks && ../$(BIN)/jupyter lab

clean: ## Remove generated data, reports and the environment
	rm -rf raw_data/*/ raw_data/MANIFEST.json processed_data/*/ processed_data/*.json.gz \
	       processed_data/_* logs reports $(VENV) db/sqlite/*.db
