# Two commands on a fresh Linux machine (Python 3.10+ with venv):
#   make run    set up .venv and run the demo (embedded broker, simulated wearable, live view)
#   make test   set up .venv (with the training extras) and run the test suite
# The package is installed non-editable, so tests exercise what users install.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(abspath $(VENV))/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
ARGS   ?=

.PHONY: run test setup setup-test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

# The second install refreshes the package itself (same version number, new code).
setup: $(BIN)/python
	rm -rf build
	$(PIP) install .
	$(PIP) install --no-deps --force-reinstall .

setup-test: $(BIN)/python
	rm -rf build
	$(PIP) install ".[test,train]"
	$(PIP) install --no-deps --force-reinstall .

run: setup
	$(BIN)/emotion-edge demo $(ARGS)

# --import-mode=importlib keeps the repo off sys.path: tests import the installed package.
test: setup-test
	cd tests && $(BIN)/python -m pytest --import-mode=importlib -p no:cacheprovider -q $(ARGS) .

bench: setup
	$(BIN)/emotion-edge bench $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
