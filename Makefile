# op-dbus: `make demo` runs the main job against the lab, `make test` runs every test.
# Both install what they need first (Debian packages, the venv, the lab's cached rootfs).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
OPDBUS := $(BIN)/op-dbus
LAB := opdbus-lab

.PHONY: setup deps venv rootfs demo test lint bench lab-down clean

setup: deps venv rootfs

deps:
	sh scripts/install-deps

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

rootfs: venv
	$(OPDBUS) lab build-rootfs

demo: setup
	$(OPDBUS) lab up --name $(LAB)
	$(OPDBUS) lab exec --name $(LAB) -- $(OPDBUS) doctor --mode full
	$(OPDBUS) lab exec --name $(LAB) -- $(OPDBUS) diff examples/full-mode.json; \
	  rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 3 ] || [ $$rc -eq 6 ]
	@echo
	@echo "The lab stays up: 'eval \"\$$($(OPDBUS) lab env --name $(LAB))\"' points op-dbus at it,"
	@echo "'$(OPDBUS) lab exec --name $(LAB) -- CMD' runs CMD inside it, 'make lab-down' removes it."

lab-down: venv
	$(OPDBUS) lab down --name $(LAB)

lint: venv
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

test: setup lint
	$(BIN)/pytest -q

bench: setup
	$(BIN)/python benchmarks/run.py

clean: lab-down
	rm -rf $(VENV) build src/*.egg-info
