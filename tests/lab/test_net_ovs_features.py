"""VLANs, trunks, MTU, patch ports, tunnels and bonds of the net plugin against real OVS.

Each field is read back with `ovs-vsctl` and compared with `op-dbus query`; each one's
rollback is forced by a real failure later in the same apply (a foreign default route, which
makes adding the file's gateway fail after the OVSDB transaction has committed).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_net_apply import apply_ok, opdbus, reset, state_file, vsctl

from op_dbus.lab import Lab, run_in_lab

DUMMIES = ("ovmd1", "ovmd2")
SPARE = "ovmd3"
"""A third device: the changed file's bond takes it instead of ovmd2."""
"""System devices for the bond to sit on: veths in the lab's netns (this kernel may lack the
dummy module), their peers `NAMEp` left unattached."""


def features() -> dict[str, Any]:
    return {
        "interfaces": [
            {"name": "ovmbr1", "type": "ovs-bridge", "mtu": 1400},
            {"name": "ovmbr2", "type": "ovs-bridge"},
            {
                "name": "ovmv10",
                "type": "ovs-internal",
                "bridge": "ovmbr1",
                "vlan": 10,
                "mtu": 1300,
            },
            {
                "name": "ovmtr",
                "type": "ovs-internal",
                "bridge": "ovmbr1",
                "trunks": [30, 20],
                "vlan_mode": "trunk",
            },
            {"name": "ovmp1", "type": "ovs-patch", "bridge": "ovmbr1", "peer": "ovmp2"},
            {"name": "ovmp2", "type": "ovs-patch", "bridge": "ovmbr2", "peer": "ovmp1"},
            {
                "name": "ovmvx",
                "type": "ovs-tunnel",
                "bridge": "ovmbr2",
                "tunnel": {"type": "vxlan", "remote_ip": "192.0.2.7", "key": 5000},
            },
            {
                "name": "ovmgre",
                "type": "ovs-tunnel",
                "bridge": "ovmbr2",
                "tunnel": {"type": "gre", "remote_ip": "192.0.2.8", "key": 7},
            },
            {
                "name": "ovmbond",
                "type": "ovs-bond",
                "bridge": "ovmbr2",
                "bond": {"interfaces": list(DUMMIES), "mode": "balance-slb", "lacp": "off"},
            },
        ]
    }


@pytest.fixture
def ovs_lab(lab: Lab) -> Iterator[Lab]:
    reset(lab)
    for name in (*DUMMIES, SPARE):
        run_in_lab(lab, "ip", "link", "add", name, "type", "veth", "peer", "name", f"{name}p")
        run_in_lab(lab, "ip", "link", "set", name, "up")
    try:
        yield lab
    finally:
        reset(lab)
        for name in (*DUMMIES, SPARE):
            run_in_lab(lab, "ip", "link", "del", name, check=False)


def queried(lab: Lab) -> dict[str, dict[str, Any]]:
    result = opdbus(lab, "query", "--plugin", "net", "--json")
    assert result.returncode == 0, result.stderr
    return {
        e["name"]: e for e in json.loads(result.stdout)["state"]["plugins"]["net"]["interfaces"]
    }


def get(lab: Lab, table: str, row: str, column: str) -> str:
    return vsctl(lab, "get", table, row, column)


def test_every_field_reads_back_alike_in_ovs_vsctl_and_query(ovs_lab: Lab, tmp_path: Path) -> None:
    path = state_file(tmp_path, features())
    apply_ok(ovs_lab, path)

    assert get(ovs_lab, "Port", "ovmv10", "tag") == "10"
    assert get(ovs_lab, "Port", "ovmtr", "trunks") == "[20, 30]"
    assert get(ovs_lab, "Port", "ovmtr", "vlan_mode") == "trunk"
    assert get(ovs_lab, "Interface", "ovmv10", "mtu_request") == "1300"
    assert get(ovs_lab, "Interface", "ovmbr1", "mtu_request") == "1400"
    assert get(ovs_lab, "Interface", "ovmp1", "type") == "patch"
    assert get(ovs_lab, "Interface", "ovmp1", "options:peer") == "ovmp2"
    assert get(ovs_lab, "Interface", "ovmvx", "type") == "vxlan"
    assert get(ovs_lab, "Interface", "ovmvx", "options") == '{key="5000", remote_ip="192.0.2.7"}'
    assert get(ovs_lab, "Interface", "ovmgre", "type") == "gre"
    assert get(ovs_lab, "Port", "ovmbond", "bond_mode") == "balance-slb"
    assert get(ovs_lab, "Port", "ovmbond", "lacp") == "off"
    assert set(vsctl(ovs_lab, "list-ifaces", "ovmbr2").split()) == {
        "ovmp2",
        "ovmvx",
        "ovmgre",
        *DUMMIES,
    }
    mtu = json.loads(run_in_lab(ovs_lab, "ip", "-j", "link", "show", "ovmv10").stdout)[0]["mtu"]

    found = queried(ovs_lab)
    assert found["ovmv10"]["vlan"] == 10 and found["ovmv10"]["mtu"] == mtu == 1300
    assert found["ovmbr1"]["mtu"] == 1400
    assert (found["ovmtr"]["trunks"], found["ovmtr"]["vlan_mode"]) == ([20, 30], "trunk")
    assert (found["ovmp1"]["type"], found["ovmp1"]["peer"]) == ("ovs-patch", "ovmp2")
    assert found["ovmvx"]["tunnel"] == {"type": "vxlan", "remote_ip": "192.0.2.7", "key": 5000}
    assert found["ovmbond"]["type"] == "ovs-bond"
    assert found["ovmbond"]["bond"] == {
        "interfaces": list(DUMMIES),
        "mode": "balance-slb",
        "lacp": "off",
    }
    for name in ("ovmp1", "ovmp2", "ovmvx", "ovmgre", "ovmbond"):
        assert found[name]["ofport"] > 0, found[name]
    assert opdbus(ovs_lab, "verify", path).returncode == 0
    again = opdbus(ovs_lab, "diff", path)
    assert again.returncode == 0, again.stdout


def changed(net: dict[str, Any]) -> dict[str, Any]:
    """Every new field of `features()` changed, and a gateway whose route will fail."""
    by_name = {e["name"]: e for e in net["interfaces"]}
    by_name["ovmbr1"]["mtu"] = 1450
    by_name["ovmv10"].update(vlan=11, mtu=1280)
    by_name["ovmtr"].update(trunks=[40], vlan_mode="native-untagged")
    by_name["ovmp1"]["peer"], by_name["ovmp2"]["peer"] = "ovmp3", "ovmp4"
    net["interfaces"] += [  # both on a third bridge: a chain, not a loop (a broadcast storm)
        {"name": "ovmbr3", "type": "ovs-bridge"},
        {"name": "ovmp3", "type": "ovs-patch", "bridge": "ovmbr3", "peer": "ovmp1"},
        {"name": "ovmp4", "type": "ovs-patch", "bridge": "ovmbr3", "peer": "ovmp2"},
    ]
    by_name["ovmvx"]["tunnel"] = {"type": "geneve", "remote_ip": "192.0.2.9", "dst_port": 6082}
    by_name["ovmbond"]["bond"] = {"interfaces": ["ovmd1", SPARE], "mode": "active-backup"}
    # The gateway sits on a bridge of its own: the tunnels' underlay route (the default one)
    # must not lead back into the bridges they are on, or each ARP would loop through them.
    gateway = {"enabled": True, "address": [{"ip": "10.31.0.1", "prefix": 24}]}
    gateway["gateway"] = "10.31.0.254"
    net["interfaces"].append({"name": "ovmbr4", "type": "ovs-bridge", "ipv4": gateway})
    return net


SNAPSHOT_COLUMNS = [
    ("Port", "ovmv10", "tag"),
    ("Interface", "ovmv10", "mtu_request"),
    ("Interface", "ovmbr1", "mtu_request"),
    ("Port", "ovmtr", "trunks"),
    ("Port", "ovmtr", "vlan_mode"),
    ("Interface", "ovmp1", "options"),
    ("Interface", "ovmvx", "type"),
    ("Interface", "ovmvx", "options"),
    ("Port", "ovmbond", "bond_mode"),
    ("Port", "ovmbond", "lacp"),
]


def test_a_later_failure_restores_every_field_exactly(ovs_lab: Lab, tmp_path: Path) -> None:
    apply_ok(ovs_lab, state_file(tmp_path, features()))
    before = {key: get(ovs_lab, *key) for key in SNAPSHOT_COLUMNS}
    ifaces_before = sorted(vsctl(ovs_lab, "list-ifaces", "ovmbr2").split())
    run_in_lab(ovs_lab, "ip", "route", "add", "default", "dev", "ovmd1")  # the fault

    result = opdbus(ovs_lab, "apply", state_file(tmp_path, changed(features()), "changed.json"))

    assert result.returncode == 4, result.stdout + result.stderr
    assert {key: get(ovs_lab, *key) for key in SNAPSHOT_COLUMNS} == before
    assert before[("Port", "ovmv10", "tag")] == "10"
    assert sorted(vsctl(ovs_lab, "list-ifaces", "ovmbr2").split()) == ifaces_before  # ovmd2 back

    run_in_lab(ovs_lab, "ip", "route", "del", "default", "dev", "ovmd1")
    apply_ok(ovs_lab, state_file(tmp_path, changed(features()), "changed.json"))
    after = {key: get(ovs_lab, *key) for key in SNAPSHOT_COLUMNS}
    kept = [key for key in SNAPSHOT_COLUMNS if after[key] == before[key]]
    assert kept == [("Port", "ovmbond", "lacp")], after  # left out of the bond: left alone
    assert after[("Interface", "ovmvx", "options")] == '{dst_port="6082", remote_ip="192.0.2.9"}'
    assert after[("Port", "ovmtr", "trunks")] == "[40]"
    assert set(vsctl(ovs_lab, "list-ifaces", "ovmbr2").split()) >= {"ovmd1", SPARE}
    assert "ovmd2" not in vsctl(ovs_lab, "list-ifaces", "ovmbr2").split()
    assert queried(ovs_lab)["ovmbond"]["bond"]["interfaces"] == ["ovmd1", SPARE]
