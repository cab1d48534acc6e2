# Two commands from a fresh clone:
#   make app    install everything, prepare the demo database and model, start the dashboard
#   make test   install everything (Chromium included) and run the tests
# And, for the shop's systems, the HTTP routes alone in processes of their own:
#   make api    as make app, then `python -m gender api` (API_PORT, WORKERS)
# Both create .venv/ on first use and reinstall only when the requirements change.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8501
# Empty: .streamlit/config.toml's 127.0.0.1. ADDRESS=0.0.0.0 listens on every interface (README, "Access").
ADDRESS ?=
API_PORT ?= 8000
WORKERS ?= 1

.PHONY: app api test bench lint

app: $(VENV)/.runtime
	$(BIN)/python -m gender setup
	$(BIN)/streamlit run streamlit_app.py --server.port $(PORT) $(if $(ADDRESS),--server.address $(ADDRESS))

api: $(VENV)/.runtime
	$(BIN)/python -m gender setup
	$(BIN)/python -m gender api --port $(API_PORT) --workers $(WORKERS) $(if $(ADDRESS),--host $(ADDRESS))

test: $(VENV)/.dev chromium spark
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.dev
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

# The pinned requirements, then this project itself, editable (the `gender` command; pyproject.toml).
$(VENV)/.runtime: requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $@ $(VENV)/.runtime

# The browser tests drive Debian's Chromium (Playwright's own browser download is not available here).
chromium:
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

# Scoring on Spark (optional; tests/test_spark.py): pyspark into .venv/ and Debian's Java 17 when missing.
spark: $(VENV)/.spark
	@java -version 2>&1 | grep -q 'version "\(1[7-9]\|2[0-9]\)' || (apt-get update -qq && apt-get install -y -qq openjdk-17-jre-headless >/dev/null)
$(VENV)/.spark: requirements-spark.txt $(VENV)/.dev
	$(BIN)/python -m pip install --quiet -r requirements-spark.txt
	touch $@
.PHONY: spark
