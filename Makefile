# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv and install.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench bench-ingest bench-ui bench-attach soak clean

# Reinstall only when pyproject.toml changes (a full install takes about 100 s).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test,bench]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/vpcwatch demo

test: $(STAMP) lint
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check core tui tests bench
	$(BIN)/lint-imports

bench: bench-ingest bench-ui bench-attach

bench-ingest: $(STAMP)
	$(BIN)/python bench/ingest.py

bench-ui: $(STAMP)
	$(BIN)/python bench/ui.py
	$(BIN)/python bench/week.py

bench-attach: $(STAMP)
	$(BIN)/python bench/attach.py

soak: $(STAMP)
	$(BIN)/python bench/soak.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache snapshot_report.html
