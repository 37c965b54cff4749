"""Container ports on VLANs: real traffic decides, `ovs-vsctl` and `op-dbus query` agree."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from test_lxc_apply import clean, opdbus, query_lxc, sh, write  # noqa: F401 (clean: a fixture)

from op_dbus.lab import Lab, run_in_lab

GATEWAY = "10.41.0.1"
ADDRESS = {"ovm-a": "10.41.0.2", "ovm-b": "10.41.0.3"}


def state(vlan_a: int, vlan_b: int, mtu: int | None = None) -> dict[str, Any]:
    containers = []
    for ct_id, name, vlan in (("910", "ovm-a", vlan_a), ("911", "ovm-b", vlan_b)):
        ct = {
            "id": ct_id,
            "name": name,
            "veth": f"vi{ct_id}",
            "bridge": "ovmbr",
            "running": True,
            "vlan": vlan,
            "ipv4": {"address": [{"ip": ADDRESS[name], "prefix": 24}]},
        }
        containers.append(ct | ({"mtu": mtu} if mtu else {}))
    gateway = {
        "name": "ovmg10",
        "type": "ovs-internal",
        "bridge": "ovmbr",
        "vlan": 10,
        "ipv4": {"enabled": True, "address": [{"ip": GATEWAY, "prefix": 24}]},
    }
    net = {"interfaces": [{"name": "ovmbr", "type": "ovs-bridge"}, gateway]}
    return {"version": 1, "plugins": {"net": net, "lxc": {"containers": containers}}}


def pings(lab: Lab, name: str, address: str) -> bool:
    argv = ("lxc-attach", "-P", str(lab.lxc_path), "-n", name, "--", "ping", "-c1", "-W2", address)
    return run_in_lab(lab, *argv, check=False).returncode == 0


def vsctl(lab: Lab, *args: str) -> str:
    return sh(lab, "ovs-vsctl", "--timeout=10", *args).strip()


def test_a_tagged_container_reaches_its_vlan_only(clean: Lab, tmp_path: Path) -> None:  # noqa: F811
    result = opdbus(clean, "apply", write(tmp_path, state(10, 20, mtu=1400)))
    assert result.returncode == 0, result.stdout + result.stderr

    assert vsctl(clean, "get", "Port", "vi910", "tag") == "10"
    assert vsctl(clean, "get", "Port", "vi911", "tag") == "20"
    found = query_lxc(clean)
    assert (found["ovm-a"]["vlan"], found["ovm-b"]["vlan"]) == (10, 20)
    assert found["ovm-a"]["mtu"] == 1400
    inside = sh(clean, "lxc-attach", "-P", str(clean.lxc_path), "-n", "ovm-a", "--", "cat",
                "/sys/class/net/eth0/mtu")  # fmt: skip
    assert inside.strip() == "1400"
    assert pings(clean, "ovm-a", GATEWAY)
    assert not pings(clean, "ovm-b", GATEWAY)
    assert not pings(clean, "ovm-a", ADDRESS["ovm-b"])

    result = opdbus(clean, "apply", write(tmp_path, state(10, 10, mtu=1400), "same-vlan.json"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert vsctl(clean, "get", "Port", "vi911", "tag") == "10"
    assert pings(clean, "ovm-a", ADDRESS["ovm-b"])
    assert pings(clean, "ovm-b", GATEWAY)


def test_a_later_failure_puts_the_container_back_on_its_vlan(clean: Lab, tmp_path: Path) -> None:  # noqa: F811
    first = state(10, 20)
    first["plugins"]["lxc"]["containers"][1]["running"] = False
    result = opdbus(clean, "apply", write(tmp_path, first))
    assert result.returncode == 0, result.stdout + result.stderr
    # The fault: a device named like ovm-b's host veth, so starting ovm-b (after ovm-a's
    # restart on its new VLAN and MTU, in the same apply) fails.
    run_in_lab(clean, "ip", "link", "add", "vi911", "type", "veth", "peer", "name", "vi911p")
    try:
        result = opdbus(clean, "apply", write(tmp_path, state(30, 20, mtu=1300), "changed.json"))
    finally:
        run_in_lab(clean, "ip", "link", "del", "vi911", check=False)

    assert result.returncode == 4, result.stdout + result.stderr
    assert "ovm-b" in result.stdout + result.stderr
    assert "vlan = 10 -> 30" in result.stdout, result.stdout  # the plan had ovm-a's change
    assert vsctl(clean, "get", "Port", "vi910", "tag") == "10"
    found = query_lxc(clean)
    assert (found["ovm-a"]["vlan"], found["ovm-a"]["mtu"], found["ovm-a"]["running"]) == (
        10, None, True
    )  # fmt: skip
    assert found["ovm-b"]["running"] is False
    assert pings(clean, "ovm-a", GATEWAY)
