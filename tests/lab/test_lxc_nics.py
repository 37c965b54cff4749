"""A container with several NICs on several bridges: each NIC is wired, addressed and reached."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from test_lxc_apply import clean, opdbus, query_lxc, sh, write  # noqa: F401 (clean: a fixture)

from op_dbus.lab import Lab, run_in_lab

SUBNETS = ("10.43.1", "10.43.2")


def state(second_vlan: int | None = None) -> dict[str, Any]:
    interfaces: list[dict[str, Any]] = []
    nics = []
    for index, subnet in enumerate(SUBNETS, start=1):
        bridge = f"ovmn{index}"
        gateway = {"enabled": True, "address": [{"ip": f"{subnet}.1", "prefix": 24}]}
        interfaces.append({"name": bridge, "type": "ovs-bridge", "ipv4": gateway})
        nic = {"veth": f"vi920n{index}", "bridge": bridge}
        nic["ipv4"] = {"address": [{"ip": f"{subnet}.2", "prefix": 24}]}
        nics.append(nic)
    if second_vlan is not None:
        nics[1]["vlan"] = second_vlan
    ct = {"id": "920", "name": "ovm-n", "running": True, "nics": nics}
    return {
        "version": 1,
        "plugins": {"net": {"interfaces": interfaces}, "lxc": {"containers": [ct]}},
    }


def vsctl(lab: Lab, *args: str) -> str:
    return sh(lab, "ovs-vsctl", "--timeout=10", *args).strip()


def test_two_nics_on_two_bridges_are_both_wired_and_reached(clean: Lab, tmp_path: Path) -> None:  # noqa: F811
    path = write(tmp_path, state())
    result = opdbus(clean, "apply", path)
    assert result.returncode == 0, result.stdout + result.stderr

    # The container's busybox `ip` has no JSON: iproute2's, run in the container's netns.
    pid = sh(clean, "lxc-info", "-P", str(clean.lxc_path), "-n", "ovm-n", "-p", "-H").strip()
    addr = sh(clean, "nsenter", "-t", pid, "-n", "ip", "-j", "addr")
    links = {link["ifname"]: link for link in json.loads(addr)}
    for index, subnet in enumerate(SUBNETS):
        addresses = [a["local"] for a in links[f"eth{index}"]["addr_info"] if a["family"] == "inet"]
        assert addresses == [f"{subnet}.2"]
    assert links["eth0"]["address"] == "02:00:00:00:03:98"  # id 920, NIC 0
    assert links["eth1"]["address"] == "02:01:00:00:03:98"
    assert vsctl(clean, "port-to-br", "vi920n1") == "ovmn1"
    assert vsctl(clean, "port-to-br", "vi920n2") == "ovmn2"
    for subnet in SUBNETS:
        ping = run_in_lab(clean, "ping", "-c1", "-W2", f"{subnet}.2", check=False)
        assert ping.returncode == 0, ping.stdout
    nics = query_lxc(clean)["ovm-n"]["nics"]
    assert [(n["veth"], n["bridge"]) for n in nics] == [("vi920n1", "ovmn1"), ("vi920n2", "ovmn2")]
    assert opdbus(clean, "verify", path).returncode == 0
    assert opdbus(clean, "diff", path).returncode == 0

    tagged = write(tmp_path, state(second_vlan=7), "tagged.json")
    result = opdbus(clean, "apply", tagged)
    assert result.returncode == 0, result.stdout + result.stderr
    assert vsctl(clean, "get", "Port", "vi920n2", "tag") == "7"
    assert vsctl(clean, "get", "Port", "vi920n1", "tag") == "[]"
    assert query_lxc(clean)["ovm-n"]["nics"][1]["vlan"] == 7
    untagged_peer = run_in_lab(clean, "ping", "-c1", "-W2", f"{SUBNETS[1]}.2", check=False)
    assert untagged_peer.returncode != 0  # the bridge's own port is untagged, the NIC on VLAN 7


def test_a_later_failure_restores_the_nics_exactly(clean: Lab, tmp_path: Path) -> None:  # noqa: F811
    first = state()
    single = {"id": "921", "name": "ovm-o", "veth": "vi921", "bridge": "ovmn1", "running": False}
    first["plugins"]["lxc"]["containers"].append(single)
    result = opdbus(clean, "apply", write(tmp_path, first))
    assert result.returncode == 0, result.stdout + result.stderr
    before = query_lxc(clean)["ovm-n"]["nics"]

    changed = state(second_vlan=9)
    nics = changed["plugins"]["lxc"]["containers"][0]["nics"]
    nics[0]["mtu"] = 1300
    nics.append({"veth": "vi920n3", "bridge": "ovmn2"})
    changed["plugins"]["lxc"]["containers"].append({**single, "running": True})
    # The fault: a device named like ovm-o's veth, so starting ovm-o (after ovm-n's restart
    # with three NICs, in the same apply) fails.
    run_in_lab(clean, "ip", "link", "add", "vi921", "type", "veth", "peer", "name", "vi921p")
    try:
        result = opdbus(clean, "apply", write(tmp_path, changed, "changed.json"))
    finally:
        run_in_lab(clean, "ip", "link", "del", "vi921", check=False)

    assert result.returncode == 4, result.stdout + result.stderr
    assert "ovm-o" in result.stdout + result.stderr
    after = query_lxc(clean)["ovm-n"]
    assert after["nics"] == before and after["running"] is True
    assert vsctl(clean, "list-ports", "ovmn2").split() == ["vi920n2"]
    assert vsctl(clean, "get", "Port", "vi920n2", "tag") == "[]"
    assert run_in_lab(clean, "ping", "-c1", "-W2", f"{SUBNETS[1]}.2", check=False).returncode == 0


def test_a_second_nic_named_like_a_host_device_is_refused_before_anything_changes(
    clean: Lab,  # noqa: F811
    tmp_path: Path,
) -> None:
    run_in_lab(clean, "ip", "link", "add", "vi920n2", "type", "veth", "peer", "name", "vi920n2p")
    try:
        result = opdbus(clean, "apply", write(tmp_path, state()))
    finally:
        run_in_lab(clean, "ip", "link", "del", "vi920n2", check=False)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "container/ovm-n" in result.stdout and "vi920n2" in result.stdout
    assert vsctl(clean, "list-br") == ""
