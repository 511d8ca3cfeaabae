# Two commands do everything: `make book` and `make test`.
# Both create the virtual environment in .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NODE_STAMP := tests/browser/node_modules/.installed
NOTEBOOKS := $(shell find book -name '*.ipynb' -not -path '*/.ipynb_checkpoints/*' | sort)
# Processes at a time for pytest (pytest-xdist) and the notebooks: every core.
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
# One BLAS thread per process: small matrices run faster, and runs are bitwise reproducible.
export OMP_NUM_THREADS ?= 1
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: env execute book test test-py test-nb test-book test-browser browser-tools bench solutions clean

env: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet pip==26.3
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

# Every chapter notebook, JOBS at a time, into the jupyter-cache that the book
# build reads (tools/execute_notebooks.py): within one `make test` or `make book`
# each notebook is executed once, always afresh, and a failing cell fails here.
execute: $(STAMP)
	$(BIN)/python tools/execute_notebooks.py --jobs $(JOBS) $(NOTEBOOKS)

# The book from the executed notebooks (execute_notebooks: cache), warnings as errors.
book: execute
	$(BIN)/jupyter-book build . -W -n --keep-going
	@echo "Book: _build/html/index.html"

test: test-py test-nb test-book test-browser

test-py: $(STAMP)
	$(BIN)/python -m pytest -n $(JOBS) tests

test-nb: execute

test-book: book

# The book as readers meet it, after the build: every page of _build/html in
# headless Chromium (MathJax from a local copy, axe-core's audit), and a chapter
# run in a fresh environment where its first cell installs the package
# (tests/browser/). Without Chromium the page tests are skipped, loudly; with
# BNCOURSE_REQUIRE_BROWSER=1 (.ci/run) they fail instead.
test-browser: test-book browser-tools
	$(BIN)/python -m pytest -n $(JOBS) --dist loadfile tests/browser

browser-tools:
	bash tools/browser_tools.sh
	@if command -v npm >/dev/null 2>&1; then $(MAKE) --no-print-directory $(NODE_STAMP); \
	else echo "browser-tools: npm missing: MathJax and axe-core not installed" >&2; fi

$(NODE_STAMP): tests/browser/package.json tests/browser/package-lock.json
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
