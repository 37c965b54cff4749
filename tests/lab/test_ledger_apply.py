"""The ledger with the real engine and plugins: an apply against the lab's OVS is recorded.

The apply runs in a subprocess inside the lab netns, as the CLI will (load, plan, apply,
record_apply); the ledger is then read and verified from here. The bridge is checked with
`ovs-vsctl`, and removed afterwards.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from op_dbus.lab import Lab, run_in_lab
from op_dbus.ledger.entries import digest
from op_dbus.ledger.store import Ledger

BRIDGE = "ledgerbr0"
STATE = {"version": 1, "plugins": {"net": {"interfaces": [{"name": BRIDGE, "type": "ovs-bridge"}]}}}

APPLY = """
import asyncio, sys
from op_dbus.endpoints import Endpoints
from op_dbus.engine.apply import apply_plan
from op_dbus.engine.plan import make_plan
from op_dbus.engine.record import command_actor, record_apply
from op_dbus.ledger.store import Ledger
from op_dbus.model import load_state
from op_dbus.plugins import make_plugin

async def main(state_path, data_dir):
    loaded = load_state(state_path)
    sections = loaded.state.sections()
    plugins = {name: make_plugin(name, Endpoints.from_env()) for name in sections}
    try:
        plan = await make_plan(sections, plugins)
        result = await apply_plan(plan, plugins)
    finally:
        for plugin in plugins.values():
            await plugin.close()
    with Ledger.open(data_dir) as ledger:
        record_apply(ledger, plan=plan, result=result, desired=sections,
                     mode=str(loaded.mode), actor=command_actor(["op-dbus", "apply", state_path]))
    print(int(result.exit_code), result.message)

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def del_bridge(lab: Lab) -> None:
    run_in_lab(lab, "ovs-vsctl", "--timeout=10", "--if-exists", "del-br", BRIDGE)


@pytest.fixture
def clean_lab(lab: Lab) -> Iterator[Lab]:
    del_bridge(lab)
    try:
        yield lab
    finally:
        del_bridge(lab)


def test_apply_in_the_lab_is_recorded_and_verifies(clean_lab: Lab, tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text(json.dumps(STATE))
    data_dir = tmp_path / "data"
    argv = (sys.executable, "-c", APPLY, str(state), str(data_dir))
    first = run_in_lab(clean_lab, *argv)
    assert first.stdout.startswith("0 "), first.stdout + first.stderr
    bridges = run_in_lab(clean_lab, "ovs-vsctl", "--timeout=10", "list-br").stdout.split()
    assert BRIDGE in bridges
    second = run_in_lab(clean_lab, *argv)  # nothing to do: recorded as an apply of 0 actions
    assert second.stdout.startswith("0 "), second.stdout + second.stderr

    with Ledger.open(data_dir, create=False) as ledger:
        report = ledger.verify()
        values = [entry.value for entry in ledger.entries()]
    assert report.ok, report.problems
    assert report.checkpoints == 2 and report.verified_size == report.size == len(values)
    headers = [v for v in values if v["type"] == "apply"]
    assert len(headers) == 2
    first_id = headers[0]["apply_id"]
    actions = [v for v in values if v["type"] == "action"]
    assert actions and {a["apply_id"] for a in actions} == {first_id}
    assert headers[0]["result"]["applied"] == len(actions)
    assert headers[0]["desired_digest"] == digest(STATE["plugins"])
    assert headers[1]["result"] == {**headers[1]["result"], "exit_code": 0, "applied": 0}
    assert all(a["plugin"] == "net" and a["result"] == "applied" for a in actions)
    create = [a for a in actions if a["kind"] == "create" and BRIDGE in a["resource"]]
    assert create and create[0]["before_digest"] is None and create[0]["after_digest"]
