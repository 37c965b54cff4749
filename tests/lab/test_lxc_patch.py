"""A patch port pair carries container traffic between two bridges (and nothing else does)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from test_lxc_apply import clean, opdbus, sh, write  # noqa: F401 (clean: a fixture)

from op_dbus.lab import Lab, run_in_lab

ADDRESS = {"ovm-pa": "10.44.0.2", "ovm-pb": "10.44.0.3"}


def state(patched: bool) -> dict[str, Any]:
    interfaces: list[dict[str, Any]] = [
        {"name": "ovmpa", "type": "ovs-bridge"},
        {"name": "ovmpb", "type": "ovs-bridge"},
    ]
    if patched:
        interfaces += [
            {"name": "ovmpa-b", "type": "ovs-patch", "bridge": "ovmpa", "peer": "ovmpb-a"},
            {"name": "ovmpb-a", "type": "ovs-patch", "bridge": "ovmpb", "peer": "ovmpa-b"},
        ]
    containers = [
        {
            "id": ct_id,
            "name": name,
            "veth": f"vi{ct_id}",
            "bridge": bridge,
            "running": True,
            "ipv4": {"address": [{"ip": ADDRESS[name], "prefix": 24}]},
        }
        for ct_id, name, bridge in (("930", "ovm-pa", "ovmpa"), ("931", "ovm-pb", "ovmpb"))
    ]
    return {
        "version": 1,
        "plugins": {"net": {"interfaces": interfaces}, "lxc": {"containers": containers}},
    }


def pings(lab: Lab, tries: int = 1) -> bool:
    """Whether ovm-pa reaches ovm-pb in one of `tries` pings."""
    argv = ("lxc-attach", "-P", str(lab.lxc_path), "-n", "ovm-pa", "--", "ping", "-c1", "-W2")
    return any(
        run_in_lab(lab, *argv, ADDRESS["ovm-pb"], check=False).returncode == 0 for _ in range(tries)
    )


def test_a_patch_pair_joins_two_bridges(clean: Lab, tmp_path: Path) -> None:  # noqa: F811
    result = opdbus(clean, "apply", write(tmp_path, state(patched=False)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert not pings(clean)

    result = opdbus(clean, "apply", write(tmp_path, state(patched=True), "patched.json"))
    assert result.returncode == 0, result.stdout + result.stderr
    vsctl = ("ovs-vsctl", "--timeout=10", "get", "Interface")
    assert sh(clean, *vsctl, "ovmpa-b", "options:peer").strip() == "ovmpb-a"
    assert sh(clean, *vsctl, "ovmpb-a", "type").strip() == "patch"
    assert pings(clean, tries=5)  # the failed neighbour entry of before may cost a try
