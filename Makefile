# Two commands on a fresh Linux machine (Python 3.10+ with venv):
#   make run    set up .venv and run the demo (embedded broker, simulated wearable, live view)
#   make test   set up .venv (with the training extras) and run the test suite
# Both install from the hashed locks in requirements/ (pip --require-hashes), never from whatever
# the registry serves that day; `make lock` refreshes the locks, `make test-latest` tries the newest
# versions pyproject.toml allows.
# The package is installed non-editable, so tests exercise what users install.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(abspath $(VENV))/bin
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
LOCKS  := requirements
ARGS   ?=
# The tests import the installed package; --import-mode=importlib keeps the repo off sys.path.
PYTEST := -m pytest --import-mode=importlib -p no:cacheprovider -q

.PHONY: run test setup setup-test bench lock test-latest test-pi clean

# pip, setuptools and wheel themselves come from the lock; the project is then built with
# --no-build-isolation so no unpinned build dependency is fetched either.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --require-hashes -r $(LOCKS)/build.lock

define install_project
	rm -rf build
	$(PIP) install --require-hashes -r $(LOCKS)/$(1).lock
	$(PIP) install --no-deps --no-build-isolation --force-reinstall .
endef

setup: $(BIN)/python
	$(call install_project,runtime)

setup-test: $(BIN)/python
	$(call install_project,train)

run: setup
	$(BIN)/emotion-edge demo $(ARGS)

test: setup-test
	cd tests && $(BIN)/python $(PYTEST) $(ARGS) .

bench: setup
	$(BIN)/emotion-edge bench $(ARGS)

# Re-resolve every lock from pyproject.toml (universal: Python 3.10-3.13, x86_64 and aarch64).
# Each lock is constrained by the one before, so any two of them agree on every shared version.
UV_COMPILE := $(BIN)/uv pip compile --quiet --universal --python-version 3.10 --generate-hashes \
              -c $(LOCKS)/constraints.in
lock: $(BIN)/python
	$(PIP) install uv==0.13.9
	$(UV_COMPILE) pyproject.toml --extra camera --extra record -o $(LOCKS)/runtime.lock
	$(UV_COMPILE) pyproject.toml --extra camera --extra record --extra report --extra test -c $(LOCKS)/runtime.lock -o $(LOCKS)/test.lock
	$(UV_COMPILE) pyproject.toml --extra camera --extra record --extra report --extra test --extra train -c $(LOCKS)/test.lock -o $(LOCKS)/train.lock
	$(UV_COMPILE) $(LOCKS)/build.in -c $(LOCKS)/train.lock -o $(LOCKS)/build.lock

# The newest versions pyproject.toml allows, in a venv of their own: drift shows here first.
test-latest:
	rm -rf .venv-latest build
	$(PYTHON) -m venv .venv-latest
	.venv-latest/bin/python -m pip install -q --upgrade pip "setuptools>=77" wheel  # the build tools too: some tests build the wheel without isolation
	.venv-latest/bin/python -m pip install -q --upgrade ".[camera,record,report,test,train]"
	cd tests && ../.venv-latest/bin/python $(PYTEST) $(ARGS) .

# The aarch64 lane: an emulated Raspberry Pi 4 (ci/pi-emulator: Debian Bookworm arm64, CPython 3.11,
# qemu-user; root the first time) kept under $(PI_DIR), the project installed there from the locks,
# its runtime tests run there, and an E4 replay whose states must equal x86's. Not a timing of a
# real Pi. See docs/deploy.md; ARGS go to pytest on the Pi (e.g. ARGS="-- -x").
PI_DIR ?= /var/cache/emotion-edge-pi
test-pi: setup
	PI_DIR=$(PI_DIR) nice $(BIN)/python ci/pi_lane.py $(ARGS)

clean:
	rm -rf $(VENV) .venv-latest build *.egg-info
