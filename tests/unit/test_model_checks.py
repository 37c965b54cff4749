"""host_warnings (bridges neither declared nor on the host) and the exported JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path

from op_dbus.model import host_warnings, load_state, parse_state, state_json_schema

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CONTAINERS_ONLY = {
    "lxc": {
        "containers": [
            {"id": "100", "veth": "vi100", "bridge": "mesh"},
            {"id": "101", "bridge": "lan", "state": "absent"},
        ]
    }
}


def test_declared_bridges_give_no_warning() -> None:
    loaded = load_state(EXAMPLES / "full-mode.json")
    assert host_warnings(loaded.state, None, loaded.shape) == []
    assert host_warnings(loaded.state, set(), loaded.shape) == []


def test_undeclared_bridge_with_unknown_host() -> None:
    loaded = parse_state(json.dumps(CONTAINERS_ONLY))
    warnings = host_warnings(loaded.state, None, loaded.shape)
    assert [w.path for w in warnings] == ["lxc.containers[0].bridge"]  # absent ones need none
    assert '"mesh"' in warnings[0].message
    assert "not checked" in warnings[0].message


def test_undeclared_bridge_against_the_host() -> None:
    loaded = parse_state(json.dumps({"version": 1, "plugins": CONTAINERS_ONLY}))
    assert host_warnings(loaded.state, {"mesh", "vmbr0"}, loaded.shape) == []
    warnings = host_warnings(loaded.state, {"vmbr0"}, loaded.shape)
    assert [w.path for w in warnings] == ["plugins.lxc.containers[0].bridge"]
    assert "no such bridge" in warnings[0].message


def test_port_on_an_undeclared_bridge() -> None:
    doc = {"net": {"interfaces": [{"name": "p1", "type": "ovs-internal", "bridge": "br-ext"}]}}
    loaded = parse_state(json.dumps(doc))
    assert [w.path for w in host_warnings(loaded.state, set(), "stateConfig")] == [
        "net.interfaces[0].bridge"
    ]
    assert host_warnings(loaded.state, {"br-ext"}, "stateConfig") == []


def test_schema_describes_both_shapes() -> None:
    schema = state_json_schema()
    json.dumps(schema)  # plain JSON
    assert schema["$schema"].endswith("2020-12/schema")
    defs = schema["$defs"]
    assert defs["StateFile"]["required"] == ["plugins"]
    assert defs["StateFile"]["properties"]["version"]["const"] == 1
    assert schema["then"] == {"$ref": "#/$defs/StateFile"}
    assert schema["else"] == {"$ref": "#/$defs/Plugins"}
    for name in ("Interface", "Container", "Unit", "Address", "Plugins"):
        assert defs[name]["additionalProperties"] is False, name
    assert defs["Interface"]["required"] == ["name", "type"]
    assert defs["Interface"]["properties"]["type"]["enum"] == [
        "ovs-bridge",
        "ovs-port",
        "ovs-internal",
        "ovs-patch",
        "ovs-tunnel",
        "ovs-bond",
    ]
    assert defs["Address"]["properties"]["prefix"] == {
        "maximum": 32,
        "minimum": 1,
        "title": "Prefix",
        "type": "integer",
    }
    units = defs["SystemdSection"]["properties"]["units"]
    (pattern,) = units["patternProperties"]
    assert pattern.endswith(r"\.device)$")
    assert defs["Container"]["properties"]["cpus"]["anyOf"][0]["minimum"] == 1
