# Two commands do everything: `make book` and `make test`.
# Both create the virtual environment in .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
MATHJAX := tests/browser/node_modules/mathjax/es5/tex-mml-chtml.js
NOTEBOOKS := $(shell find book -name '*.ipynb' -not -path '*/.ipynb_checkpoints/*' | sort)
# One BLAS thread: small matrices run faster, and runs are bitwise reproducible.
export OMP_NUM_THREADS ?= 1
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: env book test test-py test-nb test-book test-browser bench solutions clean

env: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet pip==26.3
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

book: $(STAMP)
	$(BIN)/jupyter-book build . -W -n --keep-going
	@echo "Book: _build/html/index.html"

test: test-py test-nb test-book test-browser

test-py: $(STAMP)
	$(BIN)/python -m pytest tests

test-nb: $(STAMP)
	$(BIN)/python -m pytest --nbval-lax --nbval-current-env -p no:cacheprovider -o filterwarnings= $(NOTEBOOKS)

test-book: $(STAMP)
	$(BIN)/jupyter-book build . -W -n --keep-going

# The book as readers meet it, after the build: every page of _build/html in
# headless Chromium (MathJax from a local copy), and a chapter run in a fresh
# environment where its first cell installs the package (tests/browser/).
test-browser: test-book $(MATHJAX)
	$(BIN)/python -m pytest tests/browser

$(MATHJAX): tests/browser/package.json tests/browser/package-lock.json
	npm ci --prefix tests/browser --no-audit --no-fund
	touch $@

bench: $(STAMP)
	$(BIN)/python -m bncourse.bench

# Instructors only: the chapters with every exercise solved, graded to full points, in
# _build/solutions/ (ignored by git; the tracked notebooks keep their stubs).
solutions: $(STAMP)
	$(BIN)/python tests/exercises/make_solutions.py _build/solutions

clean:
	rm -rf _build
