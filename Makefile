# The book's front door. `make book` and `make test` are all a newcomer needs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NOTEBOOKS := $(sort $(wildcard book/*.ipynb))

.PHONY: help venv book test notebooks lab clean

help:
	@echo "make book       set up .venv, then build the site into _build/html"
	@echo "make test       set up .venv, then run tests/ and nbval over every notebook"
	@echo "make notebooks  re-execute every notebook and store its outputs"
	@echo "make lab        open the notebooks in JupyterLab"

# Reinstalls only when the pins or the package metadata change.
$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==26.3
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

venv: $(STAMP)

book: $(STAMP)
	$(BIN)/jupyter-book build . -W -n --keep-going

test: $(STAMP)
	$(BIN)/python -m pytest

# Executes like nbval does (one kernel per notebook, top to bottom) and keeps
# cell metadata free of timestamps so diffs show only real changes.
notebooks: $(STAMP)
	$(BIN)/jupyter nbconvert --to notebook --execute --inplace \
	  --ExecutePreprocessor.timeout=600 --ExecutePreprocessor.record_timing=False \
	  $(NOTEBOOKS)

lab: $(STAMP)
	$(BIN)/jupyter lab book/

clean:
	rm -rf _build
