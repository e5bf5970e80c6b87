# The book's front door. `make book` and `make test` are all a newcomer needs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NOTEBOOKS := $(sort $(wildcard book/*.ipynb))

SITE_JS  := site/node_modules/.installed
MATHJAX  := site/static/mathjax/tex-mml-chtml.js

.PHONY: help venv book site-assets test notebooks portability lab clean bench

help:
	@echo "make book       set up .venv, then build the site into _build/html"
	@echo "make test       build the site, then run tests/ (browser tests of the site included) and nbval"
	@echo "make notebooks  re-execute every notebook and store its outputs"
	@echo "make portability  nbval over every notebook as if on other CPUs (fakecpu profiles, round-off)"
	@echo "make lab        open the notebooks in JupyterLab"

# Reinstalls only when the pins or the package metadata change.
$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip==26.3
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

venv: $(STAMP)

# The site's JavaScript from the npm registry, exact versions from site/package-lock.json:
# MathJax (served by the site itself, so equations render offline) and axe-core (browser tests).
$(SITE_JS): site/package.json site/package-lock.json
	cd site && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(MATHJAX): $(SITE_JS)
	rm -rf site/static/mathjax
	mkdir -p site/static
	cp -R site/node_modules/mathjax/es5 site/static/mathjax
	touch $@

site-assets: $(MATHJAX)

book: $(STAMP) $(MATHJAX)
	$(BIN)/jupyter-book build . -W -n --keep-going

# The site tests (tests/site/) open the built site in chromium, so the site is built first.
test: book
	$(BIN)/python -m pytest

# Executes like nbval does (one kernel per notebook, top to bottom) and keeps
# cell metadata free of timestamps so diffs show only real changes.
notebooks: $(STAMP)
	$(BIN)/jupyter nbconvert --to notebook --execute --inplace \
	  --ExecutePreprocessor.timeout=600 --ExecutePreprocessor.record_timing=False \
	  $(NOTEBOOKS)

# nbval once per CPU profile: this machine, each profile of ../shared/tools/fakecpu (SKIPPED, with the
# reason, where this machine cannot emulate them) and `round-off` (every matmul off by one ulp; runs anywhere).
# ARGS=--skip-this-machine after `make test`; ARGS="--only round-off" for one profile.
portability: $(STAMP)
	$(BIN)/python tests/portability/run.py $(ARGS)

lab: $(STAMP)
	$(BIN)/jupyter lab book/

# Times BN variants against a copy (minutes); not part of `make test`. ARGS=--quick for a short run.
bench: $(STAMP)
	$(BIN)/python benchmarks/bn_speed.py $(ARGS)

clean:
	rm -rf _build site/static
