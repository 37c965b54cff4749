"""state_file_from: query results (with read-only facts) become a state file that validates."""

from __future__ import annotations

import json

from op_dbus.model import parse_state
from op_dbus.model.export import state_file_from

QUERIED = {
    "systemd": {
        "units": {
            "openvswitch.service": {
                "enabled": True,
                "active_state": "active",
                "masked": False,
                "unit_file_state": "enabled",
                "sub_state": "running",
            }
        }
    },
    "net": {
        "datapath_types": ["netdev"],
        "interfaces": [
            {
                "name": "mesh",
                "type": "ovs-bridge",
                "ports": ["vi100", "uplink"],
                "external_ids": {"op-dbus-owner": "op-dbus", "role": "mesh"},
                "owned": True,
                "ofport": 65534,
                "ipv4": {"enabled": True, "address": [{"ip": "10.0.0.1", "prefix": 24}]},
            },
            {"name": "uplink", "type": "ovs-port", "bridge": "mesh", "owned": False},
            {
                "name": "vi100",
                "type": "ovs-port",
                "bridge": "mesh",
                "external_ids": {"op-dbus-container": "gateway"},
            },
        ],
    },
    "lxc": {
        "containers": [
            {"id": "100", "name": "gateway", "veth": "vi100", "bridge": "mesh", "pid": 4242}
        ],
        "stale_ports": [],
    },
}


def test_read_only_facts_and_marks_go_and_the_rest_stays() -> None:
    document = state_file_from(QUERIED)
    plugins = document["plugins"]
    assert plugins["systemd"]["units"]["openvswitch.service"] == {
        "enabled": True,
        "active_state": "active",
        "masked": False,
    }
    mesh, uplink = plugins["net"]["interfaces"]
    assert mesh == {
        "name": "mesh",
        "type": "ovs-bridge",
        "ports": ["uplink"],
        "external_ids": {"role": "mesh"},
        "ipv4": {"enabled": True, "address": [{"ip": "10.0.0.1", "prefix": 24}]},
    }
    assert uplink == {"name": "uplink", "type": "ovs-port", "bridge": "mesh"}
    assert plugins["lxc"] == {
        "containers": [{"id": "100", "name": "gateway", "veth": "vi100", "bridge": "mesh"}]
    }
    assert parse_state(json.dumps(document)).state.sections() == plugins


def test_without_lxc_the_ports_stay_ports() -> None:
    document = state_file_from({"net": QUERIED["net"]})
    names = [i["name"] for i in document["plugins"]["net"]["interfaces"]]
    assert names == ["mesh", "uplink", "vi100"]
    assert "external_ids" not in document["plugins"]["net"]["interfaces"][2]
