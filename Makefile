# The book's front door. `make book` and `make test` are all a newcomer needs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NOTEBOOKS := $(sort $(wildcard book/*.ipynb))

SITE_JS  := site/node_modules/.installed
MATHJAX  := site/static/mathjax/tex-mml-chtml.js

.PHONY: help venv book site-assets test notebooks portability lab dist launch-cells reader clean bench pdf

help:
	@echo "make book       set up .venv, then build the site into _build/html (and the PDF, make pdf)"
	@echo "make pdf        the whole book as one PDF: _build/pdf/bn-book.pdf, copied into the site"
	@echo "make test       build the site, then run tests/ (browser tests of the site included) and nbval"
	@echo "make notebooks  re-execute every notebook and store its outputs"
	@echo "make portability  nbval over every notebook as if on other CPUs (fakecpu profiles, round-off)"
	@echo "make lab        open the notebooks in JupyterLab"
	@echo "make dist       build a wheel of bnhelpers into dist/"
	@echo "make launch-cells  rewrite every notebook's first cell (installs bnhelpers where missing) from _config.yml"
	@echo "make reader     build .venv-reader, the reader's environment (binder/requirements.txt, no bnhelpers)"

# Reinstalls only when the pins or the package metadata change.
$(STAMP): requirements.txt binder/requirements.txt pyproject.toml
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
	$(MAKE) --no-print-directory pdf PDF_ARGS=--skip-without-chromium

# The whole book as one PDF, offline: Jupyter Book's single-page build (stored outputs, its own folder
# _build/pdf/), printed by Debian's chromium (site/make_pdf.py; it skips the print when nothing changed).
pdf: $(STAMP) $(MATHJAX)
	$(BIN)/jupyter-book build . -W -n --keep-going --builder singlehtml --path-output _build/pdf
	$(BIN)/python site/make_pdf.py $(PDF_ARGS)

# The site tests (tests/site/) open the built site in chromium, so the site is built first.
test: book reader
	$(BIN)/python -m pytest

# Executes like nbval does (one kernel per notebook, top to bottom) and keeps
# cell metadata free of timestamps so diffs show only real changes.
notebooks: $(STAMP) launch-cells
	$(BIN)/jupyter nbconvert --to notebook --execute --inplace \
	  --ExecutePreprocessor.timeout=600 --ExecutePreprocessor.record_timing=False \
	  $(NOTEBOOKS)

# nbval once per CPU profile: this machine, each profile of ../shared/tools/fakecpu (SKIPPED, with the
# reason, where this machine cannot emulate them) and `round-off` (every matmul off by one ulp; runs anywhere).
# ARGS=--skip-this-machine after `make test`; ARGS="--only round-off" for one profile.
portability: $(STAMP)
	$(BIN)/python tests/portability/run.py $(ARGS)

# Every notebook's first cell installs bnhelpers where it is missing, from repository.url in _config.yml:
# rewrite those cells after changing that address or the package's version (site/launch_cell.py).
launch-cells: $(STAMP)
	$(BIN)/python site/launch_cell.py --write

# The reader's environment, as Binder builds it: Jupyter's kernel (ipykernel, at this book's pin) and
# binder/requirements.txt, without bnhelpers. tests/test_launch.py runs chapters in it (Colab, Binder).
READER := .venv-reader
$(READER)/.installed: binder/requirements.txt requirements.txt
	rm -rf $(READER)
	$(PYTHON) -m venv $(READER)
	$(READER)/bin/python -m pip install --quiet --upgrade pip==26.3
	$(READER)/bin/python -m pip install --quiet -r binder/requirements.txt ipykernel -c requirements.txt
	touch $@

reader: $(READER)/.installed

# LAB_ARGS: extra options for JupyterLab, e.g. LAB_ARGS="--no-browser --port=8890" (tests/test_lab.py uses it).
lab: $(STAMP)
	$(BIN)/jupyter lab $(LAB_ARGS) book/

# A wheel of bnhelpers in dist/ (what the notebooks' first cell installs where bnhelpers is missing).
dist: $(STAMP)
	rm -rf dist build
	$(BIN)/python -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir dist .
	rm -rf build

# Times BN variants against a copy (minutes); not part of `make test`. ARGS=--quick for a short run.
bench: $(STAMP)
	$(BIN)/python benchmarks/bn_speed.py $(ARGS)

clean:
	rm -rf _build site/static dist build
