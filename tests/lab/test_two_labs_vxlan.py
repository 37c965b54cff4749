"""A VXLAN tunnel between two labs carries container traffic: op-dbus on each side.

The second lab is a whole one of its own (netns, ovsdb-server, ovs-vswitchd, systemd, LXC
path), brought up for this module and joined to the session's lab by one veth between their
namespaces: the underlay. Each side's state file declares an underlay bridge holding that
veth with the tunnel endpoint's address (userspace tunnelling's `br-phy` layout), a bridge
with the vxlan port, and a container on it. The containers reach each other only through
the tunnel: with the keys apart, they do not.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_lxc_apply import clean, opdbus, reset, write  # noqa: F401 (clean: a fixture)

from op_dbus.lab import Lab, run_in_lab

SECOND_LAB = f"opdbus-t{os.getpid()}-b"
"""Named after this process like the session's lab (conftest removes it when orphaned)."""
VNI = 4343
SIDES = {  # lab: underlay veth, underlay address, its peer's, container id, name, address
    "a": ("ofu0", "172.31.19.1", "172.31.19.2", "950", "ofv-a", "10.46.0.2"),
    "b": ("ofu1", "172.31.19.2", "172.31.19.1", "951", "ofv-b", "10.46.0.3"),
}


def state(side: str, key: int) -> dict[str, Any]:
    veth, local, remote, ct_id, name, address = SIDES[side]
    underlay = {"enabled": True, "address": [{"ip": local, "prefix": 24}]}
    interfaces = [
        {"name": f"ofub{side}", "type": "ovs-bridge", "ports": [veth], "ipv4": underlay},
        {"name": f"oftb{side}", "type": "ovs-bridge"},
        {
            "name": f"ofvx{side}",
            "type": "ovs-tunnel",
            "bridge": f"oftb{side}",
            "tunnel": {"type": "vxlan", "remote_ip": remote, "key": key},
        },
    ]
    ct = {
        "id": ct_id,
        "name": name,
        "veth": f"vi{ct_id}",
        "bridge": f"oftb{side}",
        "running": True,
        "ipv4": {"address": [{"ip": address, "prefix": 24}]},
    }
    return {
        "version": 1,
        "plugins": {"net": {"interfaces": interfaces}, "lxc": {"containers": [ct]}},
    }


@pytest.fixture
def two_labs(clean: Lab, tmp_path: Path) -> Iterator[tuple[Lab, Lab]]:  # noqa: F811
    second = Lab(SECOND_LAB, bare=True)
    try:
        second.up()
        run_in_lab(clean, "ip", "link", "add", "ofu0", "type", "veth", "peer", "name", "ofu1",
                   "netns", second.name)  # fmt: skip
        run_in_lab(clean, "ip", "link", "set", "ofu0", "up")
        run_in_lab(second, "ip", "link", "set", "ofu1", "up")
        yield clean, second
    finally:
        run_in_lab(clean, "ip", "link", "del", "ofu0", check=False)
        if second.dir.exists():
            reset(second, tmp_path)
        left = second.down()
        assert not left, f"lab {SECOND_LAB} left behind: {left}"


def reaches(lab: Lab, name: str, address: str, tries: int = 5) -> bool:
    """Whether the container pings `address` (the first packets wait for the tunnel's ARP)."""
    argv = ("lxc-attach", "-P", str(lab.lxc_path), "-n", name, "--", "ping", "-c1", "-W2")
    for _ in range(tries):
        if run_in_lab(lab, *argv, address, check=False).returncode == 0:
            return True
        time.sleep(0.5)
    return False


def apply(lab: Lab, tmp_path: Path, side: str, key: int) -> None:
    path = write(tmp_path, state(side, key), f"{side}-{key}.json")
    result = opdbus(lab, "apply", path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_vxlan_tunnel_between_two_labs_carries_container_traffic(
    two_labs: tuple[Lab, Lab], tmp_path: Path
) -> None:
    here, there = two_labs
    apply(here, tmp_path, "a", VNI)
    apply(there, tmp_path, "b", VNI + 1)  # keys apart: the far side drops the frames
    assert not reaches(here, "ofv-a", SIDES["b"][5], tries=2)

    apply(there, tmp_path, "b", VNI)
    assert reaches(here, "ofv-a", SIDES["b"][5])
    assert reaches(there, "ofv-b", SIDES["a"][5])
    out = run_in_lab(there, "ovs-vsctl", "--timeout=10", "get", "Interface", "ofvxb", "options")
    assert out.stdout.strip() == f'{{key="{VNI}", remote_ip="{SIDES["a"][1]}"}}'
    found = opdbus(there, "query", "--plugin", "lxc", "--json")
    (ct,) = json.loads(found.stdout)["state"]["plugins"]["lxc"]["containers"]
    assert (ct["name"], ct["bridge"], ct["running"]) == ("ofv-b", "oftbb", True)
