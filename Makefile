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

IN_LAB := $(OPDBUS) lab exec --name $(LAB) --

# The seed's Full-mode file against the lab: doctor, the plan, the apply (bridges, containers
# and openvswitch.service in one checkpointed change), cross-checks with the peer tools, a
# no-op re-apply, addresses for the containers and gateway pinging warp across mesh, the daemon
# repairing a port deleted behind its back, an independent MCP client's calls to the daemon's
# MCP server, the container-gateway host (protected containers, NAT, firewall) proved by pings,
# then the ledger with a verified, signed checkpoint; last, two more lab hosts converging from
# desired state kept in a 3-member etcd cluster (fleet mode).
demo: setup
	$(OPDBUS) lab up --name $(LAB)
	$(IN_LAB) $(OPDBUS) doctor --mode full
	$(IN_LAB) $(OPDBUS) diff examples/full-mode.json; \
	  rc=$$?; [ $$rc -eq 0 ] || [ $$rc -eq 3 ] || [ $$rc -eq 6 ]
	$(IN_LAB) $(OPDBUS) apply examples/full-mode.json
	$(IN_LAB) $(OPDBUS) verify examples/full-mode.json
	$(IN_LAB) ovs-vsctl show
	$(IN_LAB) $(OPDBUS) query --plugin net
	$(IN_LAB) sh -c 'lxc-ls -P "$$OPDBUS_LXC_PATH" --fancy'
	$(IN_LAB) ping -c 1 -W 2 192.168.1.1
	$(IN_LAB) $(OPDBUS) apply examples/full-mode.json
	$(IN_LAB) $(OPDBUS) apply examples/full-mode-addressed.json
	$(IN_LAB) sh -c 'lxc-attach -P "$$OPDBUS_LXC_PATH" -n gateway -- ping -c 2 -W 2 10.0.0.101'
	$(IN_LAB) sh scripts/demo-daemon $(OPDBUS) examples/full-mode-addressed.json
	$(IN_LAB) sh scripts/demo-mcp $(OPDBUS) examples/full-mode-addressed.json
	$(IN_LAB) sh scripts/demo-gateway $(OPDBUS) examples/gateway-host.yaml
	$(IN_LAB) $(OPDBUS) ledger log
	$(IN_LAB) $(OPDBUS) ledger verify
	$(IN_LAB) $(OPDBUS) ledger checkpoint
	$(BIN)/python scripts/demo-fleet
	@echo
	@echo "The lab stays up: 'eval \"\$$($(OPDBUS) lab env --name $(LAB))\"' points op-dbus at it,"
	@echo "'$(OPDBUS) lab exec --name $(LAB) -- CMD' runs CMD inside it, 'make lab-down' removes it."

lab-down: venv
	$(OPDBUS) lab down --name $(LAB)

lint: venv
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

test: setup lint
	$(BIN)/pytest -q

bench: setup
	$(BIN)/python benchmarks/run.py

# Takes the lab down first when op-dbus is installed; never builds the venv just to delete it.
clean:
	if [ -x $(OPDBUS) ]; then $(OPDBUS) lab down --name $(LAB); fi
	rm -rf $(VENV) build src/*.egg-info
