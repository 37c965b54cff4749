"""Fleet mode against a real 3-member etcd cluster and three lab hosts running the agent.

Each test builds on the fleet the module set up (they run in file order); each checks what
the agents did with the stock tools (`ovs-vsctl` in each host's netns, `etcdctl`).
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

from fleet_fixtures import HOSTS, Fleet, applied
from fleet_fixtures import fleet as fleet_fixture  # noqa: F401 (the module fixture `fleet`)


def uplink(index: int, *extra: dict[str, Any]) -> dict[str, Any]:
    """A host's own state: its uplink bridge with eth0, an address and the lab's gateway."""
    bridge = {
        "name": "ovsbr0",
        "type": "ovs-bridge",
        "ports": ["eth0"],
        "ipv4": {
            "enabled": True,
            "dhcp": False,
            "address": [{"ip": f"192.168.1.{10 + index}", "prefix": 24}],
            "gateway": "192.168.1.1",
        },
    }
    return {"version": 1, "plugins": {"net": {"interfaces": [bridge, *extra]}}}


def bridge(name: str) -> dict[str, Any]:
    return {"name": name, "type": "ovs-bridge", "ports": []}


def test_put_per_host_converges(fleet: Fleet) -> None:
    for index, name in enumerate(HOSTS, 1):
        done = fleet.cli("put", fleet.write(f"{name}.json", uplink(index)), "--host", name)
        assert done.returncode == 0, done.stderr
    status = fleet.wait(applied(*HOSTS), "every host applied its own state")
    for index, name in enumerate(HOSTS, 1):
        host = fleet.hosts[name]
        assert "ovsbr0" in host.bridges()
        assert host.vsctl("list-ports", "ovsbr0").stdout.split() == ["eth0"]
        addresses = subprocess.run(
            host.lab.exec_argv(["ip", "-j", "addr", "show", "dev", "ovsbr0"]),
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        ips = [a["local"] for link in json.loads(addresses.stdout) for a in link["addr_info"]]
        assert f"192.168.1.{10 + index}" in ips
        reported = fleet.etcd_json(f"/op-dbus/v1/status/{name}")
        assert reported["applied_revision"] == status[name]["etcd_revision"]
        assert reported["exit_code"] == 0
        assert status[name]["alive"] is True
        assert any("gateway 192.168.1.1" in c["check"] and c["ok"] for c in reported["probe"])
    table = fleet.cli("status")
    assert table.returncode == 0 and all(name in table.stdout for name in HOSTS)
