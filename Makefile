# Two commands for users: `make book` and `make test`.
# Both create the environment (.venv) when it is missing or pyproject.toml changed.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Extra pip requirement installed with emucal; CI sets TORCH_SPEC=torch==2.13.0 to
# take the CPU build of PyTorch. Leave it empty to let pip choose.
TORCH_SPEC ?=

.PHONY: env book test unit explorer clean

env: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "emucal needs Python 3.11 or newer; run make PYTHON=python3.11 ...")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check $(TORCH_SPEC) -e ".[book,test]"
	@touch $@

book: env
	$(BIN)/jupyter-book build .
	@echo "The book is in $(CURDIR)/_build/html/index.html"

# Unit tests, every notebook of _toc.yml with papermill, and a strict book build
# (-W --keep-going), all in FAST mode. The unit tests run on one pytest-xdist worker
# per CPU (one thread each, tests/conftest.py); the notebooks and the book after them.
test: unit
	EMUCAL_FAST=1 $(BIN)/python -m pytest -ra -m "notebooks or book" tests

unit: env
	EMUCAL_FAST=1 $(BIN)/python -m pytest -ra -n auto -m "not notebooks and not book" tests

# The sensitivity explorer of chapter 8 as a standalone web page (Voila), on this machine.
explorer: env
	$(BIN)/voila book/explorer.ipynb --Voila.ip=127.0.0.1

clean:
	rm -rf _build .pytest_cache
