"""The ledger with the real CLI, engine and plugins: `op-dbus apply` against the lab's OVS.

The apply runs as `python -m op_dbus apply` inside the lab netns; the ledger is then read and
verified from here. A second, no-op apply records nothing (idempotence). The bridge is
checked with `ovs-vsctl`, and removed afterwards.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from subprocess import CompletedProcess

import pytest

from op_dbus.lab import Lab, run_in_lab
from op_dbus.ledger.entries import digest
from op_dbus.ledger.store import Ledger

BRIDGE = "ledgerbr0"
STATE = {"version": 1, "plugins": {"net": {"interfaces": [{"name": BRIDGE, "type": "ovs-bridge"}]}}}


def del_bridge(lab: Lab) -> None:
    run_in_lab(lab, "ovs-vsctl", "--timeout=10", "--if-exists", "del-br", BRIDGE)


@pytest.fixture
def clean_lab(lab: Lab) -> Iterator[Lab]:
    del_bridge(lab)
    try:
        yield lab
    finally:
        del_bridge(lab)


def apply(lab: Lab, data_dir: Path, state: Path) -> CompletedProcess[str]:
    argv = (sys.executable, "-m", "op_dbus", "--data-dir", str(data_dir), "apply", str(state))
    result = run_in_lab(lab, *argv, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def ledger_size(data_dir: Path) -> int:
    with Ledger.open(data_dir, readonly=True) as ledger:
        return ledger.size()


def test_apply_in_the_lab_is_recorded_and_verifies(clean_lab: Lab, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text(json.dumps(STATE))
    data_dir = tmp_path / "data"
    apply(clean_lab, data_dir, state)
    bridges = run_in_lab(clean_lab, "ovs-vsctl", "--timeout=10", "list-br").stdout.split()
    assert BRIDGE in bridges
    recorded = ledger_size(data_dir)
    second = apply(clean_lab, data_dir, state)
    assert "nothing to do" in second.stdout, second.stdout
    assert ledger_size(data_dir) == recorded, "a no-op apply changes nothing and records nothing"

    with Ledger.open(data_dir, readonly=True) as ledger:
        report = ledger.verify()
        values = [entry.value for entry in ledger.entries()]
    assert report.ok, report.problems
    assert report.checkpoints == 2, "the intent and the result are each signed"
    assert report.verified_size == report.size == len(values)
    headers = [v for v in values if v["type"] == "apply"]
    assert len(headers) == 1
    header = headers[0]
    assert values[0]["type"] == "intent" and values[0]["apply_id"] == header["apply_id"]
    assert values[0]["plan_digest"] == header["plan_digest"]
    assert header["actor"].endswith(f"apply {state}")
    assert header["result"]["exit_code"] == 0
    actions = [v for v in values if v["type"] == "action"]
    assert actions and {a["apply_id"] for a in actions} == {header["apply_id"]}
    assert header["result"]["applied"] == len(actions)
    assert header["desired_digest"] == digest(STATE["plugins"])
    assert all(a["plugin"] == "net" and a["result"] == "applied" for a in actions)
    create = [a for a in actions if a["kind"] == "create" and BRIDGE in a["resource"]]
    assert create and create[0]["before_digest"] is None and create[0]["after_digest"]
    assert create[0]["before"] is None and create[0]["after"]["name"] == BRIDGE
    assert create[0]["after_digest"] == digest(create[0]["after"])
