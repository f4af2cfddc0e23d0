# casino-crm: `make demo` (set up + simulate + run everything), `make test`, `make ui`, `make bench`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PLAYERS ?= 20000
DAYS    ?= 120
SEED    ?= 42
DAGSTER_PORT ?= 3000
MLFLOW_PORT  ?= 5000
DOCS_PORT    ?= 3001
API_PORT     ?= 8000
SMTP_PORT    ?= 2525
# pytest-xdist processes for `make test` (0: one process, no xdist)
TEST_WORKERS ?= 2
export CRM_HOME ?= $(CURDIR)/data
export DAGSTER_HOME := $(CRM_HOME)/dagster
export MLFLOW_DISABLE_TELEMETRY := true
export GX_ANALYTICS_ENABLED := false
export DBT_SEND_ANONYMOUS_USAGE_STATS := false
export DO_NOT_TRACK := 1

.PHONY: help venv demo run test test-all lint ui serve bench clean

help:  ## list the targets
	@grep -E '^[a-z]+:.*## ' Makefile | sed 's/:.*## /\t/'

$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

venv: $(VENV)/.installed  ## create .venv with the pinned dependencies

demo: venv  ## simulate a casino (PLAYERS, DAYS, SEED) and run the whole pipeline through Dagster
	$(BIN)/crm simulate --players $(PLAYERS) --days $(DAYS) --seed $(SEED) --fresh
	$(BIN)/crm run
	$(BIN)/crm lists
	$(BIN)/crm campaign status
	$(BIN)/crm templates review --all --no-show --by "Demo Compliance Officer" --reason "make demo: the shipped texts, reviewed for the demo"
	$(BIN)/crm deliveries drain --local-mailbox

run: venv  ## run the daily refresh on what is landed (DATE=YYYY-MM-DD to override the as-of date)
	$(BIN)/crm run $(if $(DATE),--date $(DATE),)

test: venv  ## run the test suite (what CI runs; `make test-all` adds the extra end-to-end variants)
	$(BIN)/python -m pytest -q -m "not slower" -n $(TEST_WORKERS) --dist loadfile --durations=30

test-all: venv  ## every test, with the extra end-to-end variants marked slower (about 2 more minutes)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile

lint: venv  ## ruff, the import layering (import-linter contracts in pyproject.toml), dbt's vocabulary vars
	$(BIN)/ruff check crm ml expectations orchestration tests bench
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m crm.contract --check-dbt-vars

ui: venv  ## Dagster UI on :3000, MLflow UI on :5000, Data Docs on :3001 over the data home (Ctrl-C stops all)
	$(BIN)/python -m crm.cli.ui --dagster-port $(DAGSTER_PORT) --mlflow-port $(MLFLOW_PORT) --docs-port $(DOCS_PORT)

serve: venv  ## the integration API on 127.0.0.1:8000 (docs at /docs, web page at /ui) with a delivery worker and a local SMTP mailbox on :2525
	CRM_UI_INSECURE_COOKIES=1 $(BIN)/crm serve --port $(API_PORT) --local-mailbox $(SMTP_PORT)

# Benchmark-only dependencies (causalml), never installed by `venv`/`test`: constrained by the lock.
$(VENV)/.bench-installed: $(VENV)/.installed requirements-bench.txt
	$(BIN)/python -m pip install --quiet -r requirements-bench.txt -c requirements.lock
	touch $@

bench: venv $(VENV)/.bench-installed  ## benchmarks: figures and ratios, also written as JSON under the data home
	$(BIN)/python -m bench.run $(BENCH_ARGS)

clean:  ## remove the data home (all outputs)
	rm -rf $(CRM_HOME)
