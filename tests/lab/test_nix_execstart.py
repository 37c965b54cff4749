"""The NixOS unit's own ExecStart, taken from evaluating the seed's configuration.nix, converges
the lab: only the package path (-> this venv's op-dbus), the state file (-> the generated one)
and the endpoints (the lab's, through the environment) differ from what NixOS would run."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from test_lxc_apply import containers, list_ports, reset

from op_dbus.lab import Lab, run_in_lab
from op_dbus.ledger.store import Ledger

STATE_PATH = "/etc/op-dbus/state.json"


def _nix_eval() -> ModuleType:
    """tests/unit/nix_eval.py: the same evaluation the unit tests check."""
    path = Path(__file__).parents[1] / "unit" / "nix_eval.py"
    spec = importlib.util.spec_from_file_location("nix_eval", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


nix_eval = _nix_eval()
pytestmark = pytest.mark.skipif(nix_eval.why_not() is not None, reason=str(nix_eval.why_not()))


@pytest.fixture
def clean(lab: Lab, tmp_path: Path) -> Iterator[Lab]:
    reset(lab, tmp_path)
    try:
        yield lab
    finally:
        reset(lab, tmp_path)


def unit_command(lab: Lab, tmp_path: Path, scenario: str) -> list[str]:
    """The scenario's ExecStart with --oneshot, under the unit's environment, for the lab."""
    unit = nix_eval.unit(scenario)
    argv = nix_eval.exec_argv(unit["serviceConfig"]["ExecStart"])
    package = nix_eval.scenario(scenario)["package"]
    assert argv[0] == f"{package}/bin/op-dbus"
    state = tmp_path / "state.json"
    state.write_text(nix_eval.scenario(scenario)["etc"]["op-dbus/state.json"]["json"])
    argv = [str(Path(sys.executable).with_name("op-dbus")), *argv[1:], "--oneshot"]
    argv = [str(state) if arg == STATE_PATH else arg for arg in argv]
    assert str(state) in argv, "the unit passes its state file"
    lab_env = lab.env()
    assert set(unit["environment"]) <= set(lab_env), "every variable the unit sets is an endpoint"
    return ["env", *(f"{key}={lab_env[key]}" for key in unit["environment"]), *argv]


def ledger_actors(lab: Lab) -> list[str]:
    with Ledger.open(lab.data_dir) as ledger:
        return [
            e.value.get("actor", "") for e in ledger.entries() if e.value.get("type") == "apply"
        ]


def test_the_seeds_unit_converges_the_lab_and_a_second_start_changes_nothing(
    clean: Lab, tmp_path: Path
) -> None:
    command = unit_command(clean, tmp_path, "seed")
    before = ledger_actors(clean)
    first = run_in_lab(clean, *command, check=False, timeout=300)
    assert first.returncode == 0, first.stdout + first.stderr

    # Cross-checked with the stock tools.
    assert containers(clean) == {n: "RUNNING" for n in ("gateway", "warp", "xray-client")}
    assert list_ports(clean, "mesh") == {"vi100", "vi101", "vi102"}
    assert list_ports(clean, "ovsbr0") == {"eth0"}
    shown = json.loads(run_in_lab(clean, "ip", "-j", "addr", "show", "dev", "ovsbr0").stdout)
    addresses = {(a["local"], a["prefixlen"]) for a in shown[0]["addr_info"]}
    assert ("192.168.1.10", 24) in addresses
    state = command[command.index("--state-file") + 1]
    verify = run_in_lab(clean, sys.executable, "-m", "op_dbus", "verify", state, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    recorded = ledger_actors(clean)[len(before) :]
    assert recorded == ["op-dbus-daemon:boot"], "enableBlockchain = true: the apply is recorded"

    again = run_in_lab(clean, *command, check=False, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert ledger_actors(clean)[len(before) :] == recorded, "nothing to do, nothing recorded"


def test_a_unit_with_the_ledger_and_cache_off_applies_without_recording(
    clean: Lab, tmp_path: Path
) -> None:
    """enableBlockchain = false, enableCache = false, policy = observe: the flags are real."""
    command = unit_command(clean, tmp_path, "optionsOnLab")
    assert {"--no-ledger", "--no-cache", "observe"} <= set(command)
    before = ledger_actors(clean)
    done = run_in_lab(clean, *command, check=False, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    unit = "/org/freedesktop/systemd1/unit/openvswitch_2eservice"
    state = run_in_lab(clean, "busctl", f"--address={clean.system_bus}", "get-property",
                       "org.freedesktop.systemd1", unit, "org.freedesktop.systemd1.Unit",
                       "ActiveState")  # fmt: skip
    assert state.stdout.split() == ["s", '"active"']
    assert ledger_actors(clean) == before, "the ledger is off"
