"""state_document: query results (with read-only facts) become a state file that validates
and that plans nothing against the host it was read from."""

from __future__ import annotations

import json

import yaml

from op_dbus.model import parse_state
from op_dbus.model.export import Selection, dump, state_document
from op_dbus.plugins.lxc.diff import diff_lxc
from op_dbus.plugins.net.diff import diff_net
from op_dbus.plugins.systemd.plugin import diff_units

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
            {
                "id": "100",
                "name": "gateway",
                "veth": "vi100",
                "bridge": "mesh",
                "pid": 4242,
                "owned": True,
                "state": "present",
                "cpus": None,
            },
            {"id": None, "name": "byhand", "running": False, "owned": False, "state": "present"},
        ],
        "stale_ports": [],
    },
}


ALL_UNITS = Selection(units=["*"])


def test_read_only_facts_and_marks_go_and_the_rest_stays() -> None:
    built = state_document(QUERIED, ALL_UNITS)
    plugins = built.document["plugins"]
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
        "ipv4": {"enabled": True, "address": [{"ip": "10.0.0.1", "prefix": 24}]},
        "external_ids": {"role": "mesh"},
    }
    assert list(mesh) == ["name", "type", "ports", "ipv4", "external_ids"], "the model's order"
    assert uplink == {"name": "uplink", "type": "ovs-port", "bridge": "mesh"}
    assert plugins["lxc"] == {
        "containers": [{"id": "100", "name": "gateway", "veth": "vi100", "bridge": "mesh"}]
    }, "no nulls, no defaults (state: present), no facts"
    assert parse_state(json.dumps(built.document)).state.sections() == plugins


def test_a_container_without_an_id_is_left_out_with_a_note() -> None:
    """A hand-made container has no id, which a state file requires (`id: got null`)."""
    built = state_document(QUERIED)
    names = [c["name"] for c in built.document["plugins"]["lxc"]["containers"]]
    assert names == ["gateway"]
    assert built.left_out == ["container byhand: not created by op-dbus, no id"]


def test_the_document_plans_nothing_against_what_it_was_read_from() -> None:
    plugins = state_document(QUERIED, ALL_UNITS).document["plugins"]
    assert diff_net(QUERIED["net"], plugins["net"]) == []
    assert diff_lxc(QUERIED["lxc"], plugins["lxc"]) == []
    assert diff_units(QUERIED["systemd"], plugins["systemd"]) == []


def test_systemd_units_only_when_asked() -> None:
    assert "systemd" not in state_document(QUERIED).document["plugins"]
    asked = state_document(QUERIED, Selection(units=["ssh.service"])).document["plugins"]
    assert asked["systemd"] == {"units": {}}
    assert "net" in asked, "units named by a file's declarations do not narrow the rest"


def test_filters_narrow_to_their_sections() -> None:
    only = Selection(containers=["gate*"], narrowed=True)
    plugins = state_document(QUERIED, only).document["plugins"]
    assert list(plugins) == ["lxc"]
    bridges = Selection(bridges=["mesh"], narrowed=True)
    net = state_document(QUERIED, bridges).document["plugins"]["net"]
    assert [i["name"] for i in net["interfaces"]] == ["mesh", "uplink"]
    assert state_document(QUERIED, Selection(bridges=["nope"], narrowed=True)).document[
        "plugins"
    ] == {"net": {"interfaces": []}}


def test_facts_keep_every_field_read() -> None:
    facts = state_document(QUERIED, ALL_UNITS, facts=True).document["plugins"]
    assert facts["lxc"]["containers"][0]["pid"] == 4242
    assert facts["net"]["interfaces"][0]["ofport"] == 65534


def test_yaml_and_json_dumps_load_back_as_the_same_state() -> None:
    document = state_document(QUERIED, ALL_UNITS).document
    text = dump(document, "yaml")
    assert "null" not in text and "{" not in text, "block style, no nulls"
    assert yaml.safe_load(text) == document
    assert parse_state(text.encode()).state.sections() == document["plugins"]
    assert json.loads(dump(document, "json")) == document


def test_without_lxc_the_ports_stay_ports() -> None:
    document = state_document({"net": QUERIED["net"]}).document
    names = [i["name"] for i in document["plugins"]["net"]["interfaces"]]
    assert names == ["mesh", "uplink", "vi100"]
    assert "external_ids" not in document["plugins"]["net"]["interfaces"][2]


def test_a_filter_leaves_out_sections_it_does_not_name_whatever_they_are() -> None:
    other = {**QUERIED, "firewall": {"enable": False}}
    only = Selection(containers=["gate*"], narrowed=True)
    assert list(state_document(other, only).document["plugins"]) == ["lxc"]
