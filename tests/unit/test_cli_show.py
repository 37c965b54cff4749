"""`op-dbus show`: the topology picture, its drift marks, and the DOT it hands to Graphviz."""

from __future__ import annotations

import io
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest
from rich.console import Console

from op_dbus.cli.show import dot_of, tree_of
from op_dbus.engine.topology import topology

STATE = {
    "plugins": {
        "net": {
            "interfaces": [
                {
                    "name": "ovsbr0",
                    "type": "ovs-bridge",
                    "owned": True,
                    "ipv4": {
                        "address": [{"ip": "192.168.1.10", "prefix": 24}],
                        "gateway": "192.168.1.1",
                    },
                },
                {
                    "name": "eth0",
                    "type": "ovs-port",
                    "bridge": "ovsbr0",
                    "ofport": 1,
                    "owned": True,
                },
                {"name": 'od"d\\br', "type": "ovs-bridge", "owned": False},
                {
                    "name": "p7",
                    "type": "ovs-internal",
                    "bridge": 'od"d\\br',
                    "vlan": 7,
                    "ofport": -1,
                },
                {
                    "name": "vi100",
                    "type": "ovs-port",
                    "bridge": "ovsbr0",
                    "ofport": 2,
                    "owned": False,
                },
            ]
        },
        "lxc": {
            "containers": [
                {
                    "id": "100",
                    "name": "gateway",
                    "veth": "vi100",
                    "bridge": "ovsbr0",
                    "running": True,
                    "owned": True,
                    "ipv4": {"address": [{"ip": "10.0.0.2", "prefix": 24}]},
                },
                {"id": None, "name": "byhand", "running": False, "owned": False},
            ]
        },
    }
}
PLAN = {
    "plugins": [
        {
            "name": "net",
            "actions": [
                {"kind": "modify", "resource": "ipv4/ovsbr0"},
                {"kind": "create", "resource": "bridge/newbr"},
            ],
        },
        {"name": "lxc", "actions": [{"kind": "delete", "resource": "container/gateway"}]},
    ]
}


def test_the_picture_wires_uplinks_ports_and_containers_with_drift() -> None:
    picture = topology(STATE, PLAN)
    assert picture["uplinks"] == ["eth0"], "a container's port is no uplink"
    ovsbr0 = picture["bridges"][0]
    assert ovsbr0["drift"] == "modify", "an address change marks its bridge"
    assert [p["container"] for p in ovsbr0["ports"]] == [None, "gateway"]
    assert picture["missing"] == ["bridge/newbr"]
    assert picture["detached"] == ["byhand"]
    gateway = next(c for c in picture["containers"] if c["name"] == "gateway")
    assert gateway["drift"] == "delete" and gateway["addresses"] == ["10.0.0.2/24"]


def test_the_tree_shows_vlan_ofport_state_ownership_and_marks() -> None:
    out = io.StringIO()
    Console(file=out, width=120).print(tree_of(topology(STATE, PLAN)))
    text = out.getvalue()
    assert "~ ovsbr0 bridge 192.168.1.10/24 via 192.168.1.1" in text
    assert "eth0 port uplink ofport 1" in text
    assert "p7 internal vlan 7 no ofport" in text
    assert "- gateway (100) running 10.0.0.2/24" in text
    assert "byhand stopped (foreign)" in text
    assert "+ bridge/newbr" in text


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_dot_escapes_host_names_and_graphviz_draws_every_resource() -> None:
    dot = dot_of(topology(STATE, PLAN))
    svg = subprocess.run(["dot", "-Tsvg"], input=dot, capture_output=True, text=True, check=True)
    texts = {t.text for t in ET.fromstring(svg.stdout).iter("{http://www.w3.org/2000/svg}text")}
    for name in ("ovsbr0", 'od"d\\br', "gateway", "byhand", "uplink eth0", "+ bridge/newbr"):
        assert any(name in (t or "") for t in texts), name


KINDS = {
    "plugins": {
        "net": {
            "interfaces": [
                {"name": "br1", "type": "ovs-bridge", "owned": True, "mtu": 1400,
                 "openflow": [{"table": 0, "priority": 1, "match": {}, "actions": ["drop"]}]},
                {"name": "br2", "type": "ovs-bridge", "owned": True, "mtu": 1500},
                {"name": "tr", "type": "ovs-internal", "bridge": "br1", "trunks": [20, 30],
                 "vlan_mode": "trunk", "mtu": 1300, "ofport": 3, "owned": True},
                {"name": "pa", "type": "ovs-patch", "bridge": "br1", "peer": "pb", "ofport": 4},
                {"name": "pb", "type": "ovs-patch", "bridge": "br2", "peer": "pa", "ofport": 1},
                {"name": "vx", "type": "ovs-tunnel", "bridge": "br2", "ofport": 2,
                 "tunnel": {"type": "vxlan", "remote_ip": "192.0.2.7", "key": 5000}},
                {"name": "bo", "type": "ovs-bond", "bridge": "br2", "ofport": 5,
                 "bond": {"interfaces": ["e1", "e2"], "mode": "balance-slb", "lacp": "off"}},
                {"name": "vi200", "type": "ovs-port", "bridge": "br1", "vlan": 10, "ofport": 6,
                 "owned": False},
            ]
        },
        "lxc": {
            "containers": [
                {"id": "200", "name": "two", "running": True, "owned": True, "protected": True,
                 "veth": "vi200", "bridge": "br1",
                 "nics": [{"veth": "vi200", "bridge": "br1"}, {"veth": "vi200b", "bridge": "br2"}]},
            ]
        },
    }
}  # fmt: skip


def test_the_picture_carries_every_port_kind_and_each_nic() -> None:
    picture = topology(KINDS)
    br1, br2 = picture["bridges"]
    assert (br2["mtu"], br2["openflow"]) == (1500, 0)
    assert (br1["mtu"], br1["openflow"]) == (1400, 1)
    ports = {p["name"]: p for b in picture["bridges"] for p in b["ports"]}
    assert (ports["tr"]["trunks"], ports["tr"]["vlan_mode"], ports["tr"]["mtu"]) == (
        [20, 30],
        "trunk",
        1300,
    )
    assert ports["pa"]["peer"] == "pb"
    assert ports["vx"]["tunnel"] == {
        "type": "vxlan",
        "remote_ip": "192.0.2.7",
        "key": 5000,
        "dst_port": None,
    }
    assert ports["bo"]["bond"] == {"interfaces": ["e1", "e2"], "mode": "balance-slb", "lacp": "off"}
    assert ports["vi200"]["protected"] is True and ports["vi200"]["container"] == "two"
    assert ports["vi200b"]["container"] == "two", "a second NIC is drawn on its bridge"
    assert ports["tr"]["protected"] is None, "only a container's port is protected or not"
    assert picture["uplinks"] == [], "patch, tunnel and bond ports are no host devices"


def test_the_tree_and_the_dot_show_every_port_kind() -> None:
    out = io.StringIO()
    picture = topology(KINDS)
    Console(file=out, width=160).print(tree_of(picture))
    text = out.getvalue()
    assert "br1 bridge mtu 1400 1 openflow rule" in text
    assert "tr internal trunks 20,30 vlan_mode trunk mtu 1300 ofport 3" in text
    assert "pa patch peer pb ofport 4" in text
    assert "br2 bridge\n" in text, "Ethernet's MTU goes without saying"
    assert "vx tunnel vxlan to 192.0.2.7 key 5000 ofport 2" in text
    assert "bo bond bond e1+e2 mode balance-slb lacp off ofport 5" in text
    assert "vi200 port vlan 10 protected ofport 6" in text
    assert "vi200b veth, not attached protected" in text
    dot = dot_of(picture)
    assert r'"tr\ntrunks 20,30\nvlan_mode trunk\nmtu 1300\nofport 3"' in dot
    assert r'"vx\nvxlan to 192.0.2.7 key 5000\nofport 2"' in dot
    assert r'"bo\nbond e1+e2 mode balance-slb lacp off\nofport 5"' in dot
    assert r'"br1\nmtu 1400\n1 openflow rule"' in dot
    assert r'"vi200\nvlan 10\nprotected\nofport 6"' in dot
