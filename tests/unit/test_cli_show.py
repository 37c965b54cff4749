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
