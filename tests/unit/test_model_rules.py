"""Rules across fields: each one fires at the exact path, and valid neighbours stay quiet."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from op_dbus.model import StateInputError, parse_state

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FULL = json.loads((EXAMPLES / "full-mode.json").read_text())


def full() -> dict[str, Any]:
    return copy.deepcopy(FULL)


def problems(doc: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(StateInputError) as info:
        parse_state(json.dumps(doc))
    return [(e.path, e.message) for e in info.value.errors]


def only(doc: dict[str, Any], path: str, *words: str) -> None:
    found = problems(doc)
    assert [p for p, _ in found] == [path], found
    for word in words:
        assert word in found[0][1], found


def add_interfaces(doc: dict[str, Any], *ifaces: dict[str, Any]) -> dict[str, Any]:
    doc["net"]["interfaces"].extend(ifaces)
    return doc


def test_duplicate_interface_name() -> None:
    doc = add_interfaces(full(), {"name": "mesh", "type": "ovs-bridge"})
    only(doc, "net.interfaces[2].name", 'duplicate interface name "mesh"', "net.interfaces[1].name")


@pytest.mark.parametrize("field", ["id", "name", "veth"])
def test_duplicate_container_fields(field: str) -> None:
    doc = full()
    doc["lxc"]["containers"][2][field] = doc["lxc"]["containers"][0][field]
    only(doc, f"lxc.containers[2].{field}", f"duplicate container {field}", "lxc.containers[0]")


def test_port_claimed_by_two_bridges_via_ports_lists() -> None:
    doc = full()
    doc["net"]["interfaces"][1]["ports"] = ["eth0"]
    only(doc, "net.interfaces[1].ports[0]", 'claimed by bridge "ovsbr0"', "interfaces[0].ports[0]")


def test_port_listed_twice_by_one_bridge() -> None:
    doc = full()
    doc["net"]["interfaces"][0]["ports"] = ["eth0", "eth0"]
    only(doc, "net.interfaces[0].ports[1]", "listed twice")


def test_port_claimed_by_list_and_by_its_bridge_field() -> None:
    doc = add_interfaces(full(), {"name": "eth0", "type": "ovs-port", "bridge": "mesh"})
    only(doc, "net.interfaces[2].bridge", 'claimed by bridge "ovsbr0"')


def test_port_in_list_and_bridge_field_agreeing_is_fine() -> None:
    doc = add_interfaces(full(), {"name": "eth0", "type": "ovs-port", "bridge": "ovsbr0"})
    assert parse_state(json.dumps(doc)).state.plugins.net.interfaces[2].bridge == "ovsbr0"


def test_two_ports_naming_the_same_port_name_conflict() -> None:
    doc = add_interfaces(
        full(),
        {"name": "p1", "type": "ovs-internal", "bridge": "mesh"},
        {"name": "p1", "type": "ovs-internal", "bridge": "ovsbr0"},
    )
    assert [p for p, _ in problems(doc)] == ["net.interfaces[3].name", "net.interfaces[3].bridge"]


def test_bridge_listing_itself() -> None:
    doc = full()
    doc["net"]["interfaces"][1]["ports"] = ["mesh"]
    only(doc, "net.interfaces[1].ports[0]", "cannot be a port of itself")


def test_bridge_listing_another_bridge() -> None:
    doc = full()
    doc["net"]["interfaces"][0]["ports"] = ["eth0", "mesh"]
    only(doc, "net.interfaces[0].ports[1]", '"mesh" is an ovs-bridge')


def test_port_without_bridge() -> None:
    only(
        add_interfaces(full(), {"name": "p1", "type": "ovs-internal"}),
        "net.interfaces[2].bridge",
        "required",
    )


def test_bridge_field_on_a_bridge() -> None:
    doc = full()
    doc["net"]["interfaces"][1]["bridge"] = "ovsbr0"
    only(doc, "net.interfaces[1].bridge", "not allowed on an ovs-bridge")


def test_vlan_on_a_bridge() -> None:
    doc = full()
    doc["net"]["interfaces"][1]["vlan"] = 10
    only(doc, "net.interfaces[1].vlan", "VLAN")


@pytest.mark.parametrize(
    ("field", "value"),
    [("ports", []), ("stp", True), ("fail_mode", "secure"), ("datapath", "netdev")],
)
def test_bridge_only_fields_on_a_port(field: str, value: Any) -> None:
    port = {"name": "p1", "type": "ovs-internal", "bridge": "mesh", field: value}
    only(add_interfaces(full(), port), f"net.interfaces[2].{field}", "only an ovs-bridge")


def test_addresses_on_ovs_port_refused_but_allowed_on_ovs_internal() -> None:
    ipv4 = {"address": [{"ip": "10.1.0.1", "prefix": 24}]}
    port = {"name": "eth1", "type": "ovs-port", "bridge": "mesh", "ipv4": ipv4}
    only(add_interfaces(full(), port), "net.interfaces[2].ipv4", "ovs-internal")
    internal = {"name": "int0", "type": "ovs-internal", "bridge": "mesh", "ipv4": ipv4, "vlan": 7}
    loaded = parse_state(json.dumps(add_interfaces(full(), internal)))
    assert loaded.state.plugins.net.interfaces[2].vlan == 7


def test_port_naming_itself_as_bridge() -> None:
    port = {"name": "p1", "type": "ovs-internal", "bridge": "p1"}
    only(add_interfaces(full(), port), "net.interfaces[2].bridge", "its own bridge")


def test_port_whose_bridge_is_declared_as_a_port() -> None:
    doc = add_interfaces(
        full(),
        {"name": "p1", "type": "ovs-internal", "bridge": "mesh"},
        {"name": "p2", "type": "ovs-internal", "bridge": "p1"},
    )
    only(doc, "net.interfaces[3].bridge", "declared as an ovs-internal")


def test_container_on_a_declared_port_instead_of_a_bridge() -> None:
    doc = add_interfaces(full(), {"name": "p1", "type": "ovs-internal", "bridge": "mesh"})
    doc["lxc"]["containers"][1]["bridge"] = "p1"
    only(doc, "lxc.containers[1].bridge", "not an ovs-bridge")


def test_gateway_outside_the_interface_subnets() -> None:
    doc = full()
    doc["net"]["interfaces"][0]["ipv4"]["gateway"] = "192.168.2.1"
    only(doc, "net.interfaces[0].ipv4.gateway", "192.168.2.1", "192.168.1.0/24")


def test_gateway_inside_a_second_subnet_is_fine() -> None:
    doc = full()
    ipv4 = doc["net"]["interfaces"][0]["ipv4"]
    ipv4["address"].append({"ip": "172.16.0.5", "prefix": 16})
    ipv4["gateway"] = "172.16.200.1"
    assert parse_state(json.dumps(doc)).state.plugins.net.interfaces[0].ipv4.gateway


def test_gateway_without_addresses() -> None:
    doc = full()
    del doc["net"]["interfaces"][0]["ipv4"]["address"]
    only(doc, "net.interfaces[0].ipv4.gateway", "none is declared")


def test_dhcp_true_is_refused_at_validation() -> None:
    doc = full()
    doc["net"]["interfaces"][0]["ipv4"]["dhcp"] = True
    only(doc, "net.interfaces[0].ipv4.dhcp", "runs no DHCP client")


def test_a_second_gateway_is_refused_at_validation() -> None:
    doc = full()
    doc["net"]["interfaces"][1]["ipv4"]["gateway"] = "10.0.0.254"
    only(doc, "net.interfaces[1].ipv4.gateway", "second default route", "net.interfaces[0]")


def test_container_gateway_outside_its_subnet() -> None:
    doc = full()
    doc["lxc"]["containers"][0]["ipv4"] = {
        "address": [{"ip": "10.0.0.100", "prefix": 24}],
        "gateway": "10.0.1.1",
    }
    only(doc, "lxc.containers[0].ipv4.gateway", "10.0.0.0/24")
    doc["lxc"]["containers"][0]["ipv4"]["gateway"] = "10.0.0.1"
    assert parse_state(json.dumps(doc)).state.plugins.lxc.containers[0].ipv4.gateway == "10.0.0.1"


def test_container_gateway_without_address() -> None:
    doc = full()
    doc["lxc"]["containers"][0]["ipv4"] = {"gateway": "10.0.0.1"}
    only(doc, "lxc.containers[0].ipv4.gateway", "none is declared")


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({}, "address and gateway"),
        ({"address": [], "gateway": None}, None),
    ],
)
def test_disabled_ipv4_with_configuration(change: dict[str, Any], words: str | None) -> None:
    doc = full()
    ipv4 = doc["net"]["interfaces"][0]["ipv4"]
    ipv4.update(enabled=False, **change)
    if words is None:
        assert parse_state(json.dumps(doc)).state.plugins.net.interfaces[0].ipv4.enabled is False
    else:
        only(doc, "net.interfaces[0].ipv4.enabled", words)


def test_veth_colliding_with_a_declared_interface() -> None:
    doc = full()
    doc["lxc"]["containers"][0]["veth"] = "ovsbr0"
    only(doc, "lxc.containers[0].veth", "net.interfaces[0].name")


def test_veth_colliding_with_a_bridge_port() -> None:
    doc = full()
    doc["lxc"]["containers"][1]["veth"] = "eth0"
    only(doc, "lxc.containers[1].veth", "net.interfaces[0].ports[0]")


def test_absent_container_cannot_be_running() -> None:
    doc = full()
    doc["lxc"]["containers"][0]["state"] = "absent"
    only(doc, "lxc.containers[0].running", "absent")
    doc["lxc"]["containers"][0]["running"] = False
    assert parse_state(json.dumps(doc)).state.plugins.lxc.containers[0].state == "absent"


@pytest.mark.parametrize(
    ("unit", "words"),
    [
        ({"masked": True, "enabled": True}, "enabled: true"),
        ({"masked": True, "active_state": "active"}, "active"),
        ({"masked": True, "enabled": True, "active_state": "active"}, "enabled: true or"),
    ],
)
def test_masked_unit_conflicts(unit: dict[str, Any], words: str) -> None:
    doc = full()
    doc["systemd"]["units"]["openvswitch.service"] = unit
    only(doc, 'systemd.units["openvswitch.service"].masked', words)


def test_masked_unit_that_is_off_is_fine() -> None:
    doc = full()
    unit = {"masked": True, "enabled": False, "active_state": "inactive"}
    doc["systemd"]["units"]["openvswitch.service"] = unit
    assert parse_state(json.dumps(doc)).state.plugins.systemd.units["openvswitch.service"].masked


def test_rules_report_alongside_field_errors_in_the_plugins_shape() -> None:
    doc = full()
    doc["net"]["interfaces"][0]["ipv4"]["address"][0]["prefix"] = 99
    doc["lxc"]["containers"][1]["id"] = "100"
    doc["lxc"]["containers"][2]["veth"] = "mesh"
    paths = [p for p, _ in problems({"version": 1, "plugins": doc})]
    assert paths == [
        "plugins.net.interfaces[0].ipv4.address[0].prefix",
        "plugins.lxc.containers[1].id",
        "plugins.lxc.containers[2].veth",
    ]


def test_an_interface_with_a_bad_type_is_reported_once() -> None:
    doc = full()
    doc["net"]["interfaces"][1]["type"] = "linux-bridge"
    only(doc, "net.interfaces[1].type", '"ovs-bridge"')


def bridge(name: str, *addresses: str) -> dict[str, Any]:
    listed = [{"ip": a.split("/")[0], "prefix": int(a.split("/")[1])} for a in addresses]
    return {"name": name, "type": "ovs-bridge", "ipv4": {"address": listed}}


def warnings(doc: dict[str, Any]) -> list[tuple[str, str]]:
    return [(w.path, w.message) for w in parse_state(json.dumps(doc)).warnings]


def test_the_seed_draws_no_warning() -> None:
    assert warnings(full()) == []


def test_the_same_address_on_two_interfaces_is_refused_at_the_second() -> None:
    doc = add_interfaces(full(), bridge("br9", "192.168.1.10/16"))
    only(doc, "net.interfaces[2].ipv4.address[0].ip", "192.168.1.10", "net.interfaces[0]")


def test_an_interface_address_on_a_container_is_refused() -> None:
    doc = full()
    doc["lxc"]["containers"][0]["ipv4"] = {"address": [{"ip": "10.0.0.1", "prefix": 24}]}
    only(doc, "lxc.containers[0].ipv4.address[0].ip", "already declared at net.interfaces[1]")


def test_overlapping_subnets_on_two_bridges_warn() -> None:
    doc = add_interfaces(full(), bridge("br9", "10.0.5.1/16"))
    assert warnings(doc) == [
        (
            "net.interfaces[2].ipv4.address[0]",
            'subnet 10.0.0.0/16 overlaps 10.0.0.0/24 of bridge "mesh" at'
            " net.interfaces[1].ipv4.address[0]",
        )
    ]


def test_a_container_outside_its_bridges_subnets_warns() -> None:
    doc = full()
    doc["lxc"]["containers"][0]["ipv4"] = {"address": [{"ip": "10.7.0.2", "prefix": 24}]}
    ((path, message),) = warnings(doc)
    assert path == "lxc.containers[0].ipv4.address[0]"
    assert 'outside the subnets of bridge "mesh" (10.0.0.0/24)' in message
    doc["lxc"]["containers"][0]["ipv4"]["address"][0]["ip"] = "10.0.0.2"
    assert warnings(doc) == []


def test_nics_replace_the_single_nic_fields_and_carry_one_gateway() -> None:
    doc = full()
    addr = [{"ip": "10.0.0.9", "prefix": 24}]
    other = [{"ip": "192.168.1.99", "prefix": 24}]
    doc["lxc"]["containers"][0]["nics"] = [
        {"veth": "vi100", "bridge": "mesh", "ipv4": {"address": addr, "gateway": "10.0.0.1"}},
        {"veth": "vi100b", "bridge": "ovsbr0", "ipv4": {"address": other, "gateway": "10.0.0.1"}},
    ]
    found = dict(problems(doc))
    assert set(found) == {
        "lxc.containers[0].nics[0].veth",  # the same veth as the single-NIC field's
        "lxc.containers[0].veth",
        "lxc.containers[0].bridge",
        "lxc.containers[0].nics[1].ipv4.gateway",
    }, found
    assert "nics[0].veth" in found["lxc.containers[0].veth"]
    for field in ("veth", "bridge"):
        del doc["lxc"]["containers"][0][field]
    del doc["lxc"]["containers"][0]["nics"][1]["ipv4"]["gateway"]
    parse_state(json.dumps(doc))


def test_a_nic_veth_may_not_repeat_another_containers() -> None:
    doc = full()
    doc["lxc"]["containers"][1].pop("veth")
    doc["lxc"]["containers"][1].pop("bridge")
    doc["lxc"]["containers"][1]["nics"] = [{"veth": "vi100", "bridge": "mesh"}]
    only(doc, "lxc.containers[1].nics[0].veth", "duplicate container veth", "containers[0].veth")


def test_absent_interfaces_say_only_which_one_and_nothing_needs_them() -> None:
    doc = full()
    doc["net"]["interfaces"][1]["state"] = "absent"  # mesh, which still has ipv4 and ports
    found = problems(doc)
    paths = [p for p, _ in found]
    assert "net.interfaces[1].ipv4" in paths and "net.interfaces[1].ports" in paths
    assert all("absent" in m for p, m in found if p.startswith("net.interfaces[1]."))
    assert any(p.startswith("lxc.containers[") and p.endswith(".bridge") for p in paths), (
        "a container on a bridge marked absent"
    )


def test_an_absent_port_needs_no_bridge_but_no_bridge_may_list_it() -> None:
    doc = full()
    add_interfaces(doc, {"name": "eth0", "type": "ovs-port", "state": "absent"})
    only(doc, "net.interfaces[2].state", "net.interfaces[0].ports[0]")
    fine = full()
    add_interfaces(fine, {"name": "eth9", "type": "ovs-port", "state": "absent"})
    parse_state(json.dumps(fine))


def test_state_takes_present_or_absent_only_at_its_path() -> None:
    doc = full()
    doc["net"]["interfaces"][0]["state"] = "gone"
    (found,) = problems(doc)
    assert found[0] == "net.interfaces[0].state" and "absent" in found[1]


def test_an_address_is_not_both_kept_and_removed() -> None:
    doc = full()
    address = doc["net"]["interfaces"][1]["ipv4"]["address"]
    address.append({**address[0], "state": "absent"})
    only(doc, "net.interfaces[1].ipv4.address[1]", "listed twice")
