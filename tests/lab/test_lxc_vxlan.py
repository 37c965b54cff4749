"""A VXLAN tunnel op-dbus declares carries a container's traffic to another OVS site.

The far site is a second ovs-vswitchd in a network namespace of its own (lab.private_ovs),
set up with ovs-vsctl and joined to the lab by a veth: the underlay. Both sides use OVS's
userspace datapath, so each tunnel endpoint address sits on a bridge holding the underlay
port (the usual `br-phy` layout of userspace tunneling).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_lxc_apply import clean, opdbus, query_lxc, write  # noqa: F401 (clean: a fixture)

from op_dbus.lab import Lab, run_in_lab
from op_dbus.lab.private_ovs import PrivateOvs, private_ovs

LOCAL, REMOTE = "172.31.9.1", "172.31.9.2"
CONTAINER, FAR_HOST = "10.45.0.2", "10.45.0.9"
VNI = 4242


def state(key: int) -> dict[str, Any]:
    underlay = {"enabled": True, "address": [{"ip": LOCAL, "prefix": 24}]}
    tunnel = {"type": "vxlan", "remote_ip": REMOTE, "key": key}
    interfaces = [
        {"name": "ovmu1", "type": "ovs-bridge", "ports": ["ovmx0"], "ipv4": underlay},
        {"name": "ovmt1", "type": "ovs-bridge"},
        {"name": "ovmvx1", "type": "ovs-tunnel", "bridge": "ovmt1", "tunnel": tunnel},
    ]
    ct = {
        "id": "940",
        "name": "ovm-v",
        "veth": "vi940",
        "bridge": "ovmt1",
        "running": True,
        "ipv4": {"address": [{"ip": CONTAINER, "prefix": 24}]},
    }
    return {
        "version": 1,
        "plugins": {"net": {"interfaces": interfaces}, "lxc": {"containers": [ct]}},
    }


def far(ovs: PrivateOvs, *argv: str) -> None:
    assert ovs.vswitchd is not None
    netns = ("nsenter", "-t", str(ovs.vswitchd.pid), "-n", "--")
    subprocess.run([*netns, *argv], check=True, capture_output=True, text=True)


@pytest.fixture
def far_site(clean: Lab) -> Iterator[PrivateOvs]:  # noqa: F811
    with private_ovs(vswitchd=True) as ovs:
        assert ovs.vswitchd is not None
        pid = str(ovs.vswitchd.pid)
        run_in_lab(clean, "ip", "link", "add", "ovmx0", "type", "veth", "peer", "name", "ovmx1",
                   "netns", pid)  # fmt: skip
        try:
            run_in_lab(clean, "ip", "link", "set", "ovmx0", "up")
            far(ovs, "ip", "link", "set", "ovmx1", "up")
            for bridge in ("ovmu2", "ovmt2"):
                ovs.vsctl("add-br", bridge, "--", "set", "Bridge", bridge, "datapath_type=netdev")
            ovs.vsctl("add-port", "ovmu2", "ovmx1")
            ovs.vsctl("add-port", "ovmt2", "ovmvx2", "--", "set", "Interface", "ovmvx2",
                      "type=vxlan", f"options:remote_ip={LOCAL}", f"options:key={VNI}")  # fmt: skip
            ovs.vsctl("add-port", "ovmt2", "ovmfar", "--", "set", "Interface", "ovmfar",
                      "type=internal")  # fmt: skip
            for device, address in (("ovmu2", f"{REMOTE}/24"), ("ovmfar", f"{FAR_HOST}/24")):
                far(ovs, "ip", "addr", "add", address, "dev", device)
                far(ovs, "ip", "link", "set", device, "up")
            yield ovs
        finally:
            run_in_lab(clean, "ip", "link", "del", "ovmx0", check=False)


def reaches(lab: Lab, address: str, tries: int = 5) -> bool:
    """Whether the container pings `address` (the first packets wait for the tunnel's ARP)."""
    argv = ("lxc-attach", "-P", str(lab.lxc_path), "-n", "ovm-v", "--", "ping", "-c1", "-W2")
    for _ in range(tries):
        if run_in_lab(lab, *argv, address, check=False).returncode == 0:
            return True
        time.sleep(0.5)
    return False


def test_a_vxlan_tunnel_carries_container_traffic(
    clean: Lab,  # noqa: F811
    far_site: PrivateOvs,
    tmp_path: Path,
) -> None:
    result = opdbus(clean, "apply", write(tmp_path, state(key=VNI + 1)))  # the wrong VNI
    assert result.returncode == 0, result.stdout + result.stderr
    assert not reaches(clean, FAR_HOST, tries=2)

    result = opdbus(clean, "apply", write(tmp_path, state(key=VNI), "vni.json"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert reaches(clean, FAR_HOST)
    assert query_lxc(clean)["ovm-v"]["bridge"] == "ovmt1"
