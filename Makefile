# Front doors: `make run` does the whole job, `make test` checks it. `make help` lists the rest.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
SCALE  ?= 500
BENCH_SCALES ?= 500,2000
DB     := db/sqlite/chinook.db
# The stamps carry the interpreter's version, so that another PYTHON= rebuilds the environment
# instead of being silently ignored.
PYTHON_VERSION := $(shell $(PYTHON) -c 'import sys; print(sys.version.split()[0])' 2>/dev/null)
ifeq ($(PYTHON_VERSION),)
$(error PYTHON=$(PYTHON) does not run; pass an interpreter, e.g. make run PYTHON=python3.11)
endif
STAMP  := $(VENV)/.installed-$(PYTHON_VERSION)

.DEFAULT_GOAL := help
.PHONY: help setup db data process load notebooks summary run test lint bench lab spark-cluster clean

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	@if [ -x $(PY) ] && [ "$$($(PY) -c 'import sys; print(sys.version.split()[0])')" != "$(PYTHON_VERSION)" ]; then \
		echo "$(VENV) was made with another Python; rebuilding it with $(PYTHON) $(PYTHON_VERSION)"; \
		rm -rf $(VENV); fi
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q --editable '.[notebooks,test,dev]'
	touch $@

# The spark, bench and url extras (pyspark, about 300 MB; DuckDB, Polars; fsspec, s3fs, moto)
# stay out of the default install; `make test` installs them so that the Spark engine, every
# benchmark peer and reading raw folders from S3 (moto's server on 127.0.0.1) are tested.
$(VENV)/.test-extras-$(PYTHON_VERSION): $(STAMP) pyproject.toml
	$(PY) -m pip install -q --editable '.[spark,bench,url]'
	touch $@

setup: $(STAMP) db ## Create .venv, install the project with its dev extras, build the database

db: $(STAMP) ## Build db/sqlite/chinook.db (a no-op when it is already valid)
	$(PY) -m helpers build-db --db $(DB)

data: setup ## Generate raw_data/ (SCALE=500 gives the assessment's counts), with faults
	$(PY) -m helpers make-raw --scale $(SCALE) --out raw_data --db $(DB) --faults

process: setup ## Ingest raw_data/ into processed_data/ (resumes after a crash)
	$(PY) -m helpers ingest --raw raw_data --out processed_data

load: setup ## Load processed_data/ into db/sqlite/warehouse.db and reconcile it with Chinook
	$(PY) -m helpers load --processed processed_data --db db/sqlite/warehouse.db --base $(DB)

# The processing notebook gets the same SCALE, so that it finds `make data` and `make process`
# done instead of generating and ingesting another scale.
notebooks: setup ## Run the notebooks with papermill into reports/ (executed copies and HTML)
	$(PY) -m helpers run-notebooks --reports reports -p scale $(SCALE)

summary: $(STAMP) ## Print the answers and where every output is
	$(PY) -m helpers summary --processed processed_data --warehouse db/sqlite/warehouse.db --reports reports

# Each stage is a no-op when its inputs have not changed (build-db, make-raw, ingest and load
# say "up to date"), and the processing notebook finds the ingestion done: the raw data is read
# once, and a second `make run` redoes no ingestion or load.
run: setup data process load notebooks summary ## Everything: setup, database, raw data, ingestion, load, both notebooks, summary

# The notebooks run under papermill before nbval: papermill fails on any error, while nbval alone
# passes a notebook whose magic only printed its error (nbval issue #147).
test: setup $(VENV)/.test-extras-$(PYTHON_VERSION) ## Set up, then run lint, the whole test suite and the notebooks (papermill, nbval)
	$(BIN)/ruff check helpers tests benchmarks
	$(BIN)/pytest
	$(PY) -m helpers run-notebooks --reports reports/test-run --no-html
	$(BIN)/pytest --nbval --nbval-current-env --nbval-sanitize-with notebooks/nbval_sanitize.cfg notebooks/

lint: $(STAMP) ## ruff over the package and the tests
	$(BIN)/ruff check helpers tests benchmarks

bench: setup ## Benchmark ingestion against naive, DuckDB, Polars (BENCH_SCALES=500,2000)
	$(PY) -m pip install -q --editable '.[bench,spark]'
	$(PY) -m benchmarks.bench --scales $(BENCH_SCALES)

spark-cluster: setup $(VENV)/.test-extras-$(PYTHON_VERSION) ## Start a Spark cluster here (a master, 2 workers) for --engine spark; Ctrl-C stops it
	$(PY) -m helpers.ingest.spark_cluster --workers 2 --logs logs/spark-cluster

lab: setup ## Open JupyterLab on the project's environment
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (chinook-helpers)"
	cd notebooks && ../$(BIN)/jupyter lab

clean: ## Remove generated data, reports and the environment
	rm -rf raw_data/*/ raw_data/MANIFEST.json processed_data/*/ processed_data/*.json.gz \
	       processed_data/_* processed_data/.ingest logs reports $(VENV) db/sqlite/*.db
