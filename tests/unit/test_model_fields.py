"""Each field's validation: what is accepted, and the exact path and message of what is not."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from op_dbus.model import StateInputError, parse_state

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FULL = json.loads((EXAMPLES / "full-mode.json").read_text())
PORT = {"name": "p1", "type": "ovs-internal", "bridge": "mesh"}


def with_value(loc: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """The Full-mode example with one value set (or added) at `loc`."""
    doc = copy.deepcopy(FULL)
    doc["net"]["interfaces"].append(copy.deepcopy(PORT))
    node = doc
    for part in loc[:-1]:
        node = node[part]
    node[loc[-1]] = value
    return doc


def problems(doc: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(StateInputError) as info:
        parse_state(json.dumps(doc))
    return [(e.path, e.message) for e in info.value.errors]


def accepted(doc: dict[str, Any]) -> dict[str, Any]:
    return parse_state(json.dumps(doc)).state.sections()


IF0 = ("net", "interfaces", 0)
PORT_LOC = ("net", "interfaces", 2)
ADDR0 = (*IF0, "ipv4", "address", 0)
CT0 = ("lxc", "containers", 0)
UNIT = ("systemd", "units", "openvswitch.service")

BAD = [
    # (where, value, path, words the message must contain)
    ((*IF0, "name"), "", "net.interfaces[0].name", "must not be empty"),
    ((*IF0, "name"), "a" * 16, "net.interfaces[0].name", "at most 15 bytes"),
    ((*IF0, "name"), "é" * 7, "net.interfaces[0].name", '"é" is not allowed'),
    ((*IF0, "name"), ".", "net.interfaces[0].name", '"." or ".."'),
    ((*IF0, "name"), "..", "net.interfaces[0].name", '"." or ".."'),
    ((*IF0, "name"), "br/0", "net.interfaces[0].name", '"/" is not allowed'),
    ((*IF0, "name"), "br:0", "net.interfaces[0].name", '":" is not allowed'),
    ((*IF0, "name"), "br 0", "net.interfaces[0].name", '" " is not allowed'),
    ((*IF0, "name"), "br\t0", "net.interfaces[0].name", '"\\t" is not allowed'),
    ((*IF0, "name"), 5, "net.interfaces[0].name", "got 5"),
    ((*IF0, "type"), "bridge", "net.interfaces[0].type", 'one of "ovs-bridge"'),
    ((*IF0, "ports"), "eth0", "net.interfaces[0].ports", 'must be a list, got "eth0"'),
    ((*IF0, "ports"), ["eth 0"], "net.interfaces[0].ports[0]", '" " is not allowed'),
    ((*IF0, "ipv4", "enabled"), "yes", "net.interfaces[0].ipv4.enabled", "true or false"),
    ((*IF0, "ipv4", "dhcp"), 0, "net.interfaces[0].ipv4.dhcp", "true or false, got 0"),
    ((*IF0, "ipv4", "address"), {}, "net.interfaces[0].ipv4.address", "must be a list"),
    ((*ADDR0, "ip"), "192.168.1.300", "net.interfaces[0].ipv4.address[0].ip", "IPv4 address"),
    ((*ADDR0, "ip"), "192.168.01.10", "net.interfaces[0].ipv4.address[0].ip", "IPv4 address"),
    ((*ADDR0, "ip"), "224.0.0.1", "net.interfaces[0].ipv4.address[0].ip", "unicast"),
    ((*ADDR0, "ip"), "0.0.0.0", "net.interfaces[0].ipv4.address[0].ip", "unicast"),
    ((*ADDR0, "prefix"), 33, "net.interfaces[0].ipv4.address[0].prefix", "from 1 to 32, got 33"),
    ((*ADDR0, "prefix"), -1, "net.interfaces[0].ipv4.address[0].prefix", "from 1 to 32"),
    ((*ADDR0, "prefix"), "24", "net.interfaces[0].ipv4.address[0].prefix", 'got "24"'),
    ((*ADDR0, "prefix"), 24.0, "net.interfaces[0].ipv4.address[0].prefix", "got 24.0"),
    ((*ADDR0, "prefix"), True, "net.interfaces[0].ipv4.address[0].prefix", "got true"),
    ((*ADDR0, "mask"), 24, "net.interfaces[0].ipv4.address[0].mask", "unknown field"),
    ((*IF0, "ipv4", "gateway"), "gw", "net.interfaces[0].ipv4.gateway", "IPv4 address"),
    ((*IF0, "datapath"), "kernel", "net.interfaces[0].datapath", '"system" or "netdev"'),
    ((*IF0, "fail_mode"), "open", "net.interfaces[0].fail_mode", '"standalone" or "secure"'),
    ((*IF0, "stp"), "on", "net.interfaces[0].stp", "true or false"),
    ((*IF0, "mtu"), 67, "net.interfaces[0].mtu", "from 68 to 65535, got 67"),
    ((*IF0, "mtu"), 65536, "net.interfaces[0].mtu", "from 68 to 65535"),
    ((*PORT_LOC, "vlan"), 4096, "net.interfaces[2].vlan", "VLAN tag from 0 to 4095"),
    ((*IF0, "external_ids"), {"a": 1}, "net.interfaces[0].external_ids.a", "(a string), got 1"),
    (
        (*IF0, "external_ids"),
        {"op-dbus-owner": "me"},
        "net.interfaces[0].external_ids.op-dbus-owner",
        "reserved",
    ),
    ((*IF0, "nmae"), "x", "net.interfaces[0].nmae", 'did you mean "name"?'),
    ((*CT0, "id"), 100, "lxc.containers[0].id", "quote it"),
    ((*CT0, "id"), "99", "lxc.containers[0].id", 'from "100" to "999999999"'),
    ((*CT0, "id"), "0100", "lxc.containers[0].id", "leading zeros"),
    ((*CT0, "id"), "1000000000", "lxc.containers[0].id", "digits"),
    ((*CT0, "id"), "\u0661\u0660\u0660", "lxc.containers[0].id", "digits"),
    ((*CT0, "name"), "Gateway", "lxc.containers[0].name", "hostname label"),
    ((*CT0, "name"), "-gw", "lxc.containers[0].name", "hostname label"),
    ((*CT0, "name"), "gw-", "lxc.containers[0].name", "hostname label"),
    ((*CT0, "name"), "gw_1", "lxc.containers[0].name", "hostname label"),
    ((*CT0, "name"), "a" * 64, "lxc.containers[0].name", "1 to 63"),
    ((*CT0, "veth"), "veth-of-gateway0", "lxc.containers[0].veth", "at most 15 bytes"),
    ((*CT0, "bridge"), "me:sh", "lxc.containers[0].bridge", '":" is not allowed'),
    ((*CT0, "running"), "true", "lxc.containers[0].running", 'true or false, got "true"'),
    ((*CT0, "state"), "destroyed", "lxc.containers[0].state", '"present" or "absent"'),
    ((*CT0, "hwaddr"), "01:00:5e:00:00:01", "lxc.containers[0].hwaddr", "unicast"),
    ((*CT0, "hwaddr"), "00:00:00:00:00:00", "lxc.containers[0].hwaddr", "non-zero"),
    ((*CT0, "hwaddr"), "02-00-00-00-00-01", "lxc.containers[0].hwaddr", "MAC address like"),
    ((*CT0, "memory"), 0, "lxc.containers[0].memory", "positive integer"),
    ((*CT0, "memory"), "512MB", "lxc.containers[0].memory", '"512M"'),
    ((*CT0, "memory"), True, "lxc.containers[0].memory", "got true"),
    ((*CT0, "cpus"), 0, "lxc.containers[0].cpus", "CPU count"),
    ((*CT0, "template"), " ", "lxc.containers[0].template", "must not be empty"),
    ((*CT0, "ipv4"), {"dhcp": True}, "lxc.containers[0].ipv4.dhcp", "unknown field"),
    ((*UNIT, "enabled"), "yes", 'systemd.units["openvswitch.service"].enabled', "true or false"),
    (
        (*UNIT, "active_state"),
        "running",
        'systemd.units["openvswitch.service"].active_state',
        '"active" or "inactive", got "running"',
    ),
    ((*UNIT, "enable"), True, 'systemd.units["openvswitch.service"].enable', '"enabled"?'),
    (("systemd", "units", "foo"), {}, "systemd.units.foo", "must end in one of .service"),
    (("systemd", "units", "a/b.service"), {}, 'systemd.units["a/b.service"]', "'/'"),
    (("systemd", "units", "a b.service"), {}, 'systemd.units["a b.service"]', "may only use"),
    (("systemd", "units", "@x.service"), {}, 'systemd.units["@x.service"]', "may only use"),
    (("systemd", "units", ".service"), {}, 'systemd.units[".service"]', "may only use"),
    (("systemd", "units", "foo@.service"), {}, 'systemd.units["foo@.service"]', "a template"),
    (("systemd", "units", "x" * 248 + ".service"), {}, None, "at most 255 bytes"),
    (("systemd", "units"), [], "systemd.units", "must be a mapping, got a list"),
    (("net",), [], "net", "must be a mapping, got a list"),
    (("lxc", "containers"), {}, "lxc.containers", "must be a list, got a mapping"),
    (("extra",), {}, "extra", "allowed: net, lxc, systemd"),
]


@pytest.mark.parametrize(("loc", "value", "path", "words"), BAD)
def test_bad_field_is_refused_at_its_path(
    loc: tuple[Any, ...], value: Any, path: str | None, words: str
) -> None:
    found = problems(with_value(loc, value))
    if path is None:  # the path would be the long key itself
        path = f'systemd.units["{loc[-1]}"]'
    assert len(found) == 1, found
    assert found[0][0] == path
    assert words in found[0][1]
    assert "Input should" not in found[0][1] and "http" not in found[0][1]


def test_missing_required_fields() -> None:
    doc = copy.deepcopy(FULL)
    del doc["net"]["interfaces"][1]["type"]
    del doc["net"]["interfaces"][0]["ipv4"]["address"][0]["ip"]
    del doc["lxc"]["containers"][2]["id"]
    assert sorted(problems(doc)) == [
        ("lxc.containers[2].id", "is required"),
        ("net.interfaces[0].ipv4.address[0].ip", "is required"),
        ("net.interfaces[1].type", "is required"),
    ]


GOOD = [
    ((*IF0, "name"), "a" * 15),
    ((*IF0, "datapath"), "netdev"),
    ((*IF0, "fail_mode"), "secure"),
    ((*IF0, "stp"), False),
    ((*IF0, "mtu"), 9000),
    ((*IF0, "external_ids"), {"owner-team": "net"}),
    ((*PORT_LOC, "vlan"), 4095),
    ((*PORT_LOC, "mtu"), 68),
    ((*ADDR0, "prefix"), 1),
    (("net", "interfaces", 1, "ipv4", "address", 0, "prefix"), 32),
    ((*CT0, "id"), "999999999"),
    ((*CT0, "name"), "a" * 63),
    ((*CT0, "name"), "0gw"),
    ((*CT0, "template"), "busybox"),
    ((*CT0, "memory"), 512),
    ((*CT0, "memory"), "2G"),
    ((*CT0, "cpus"), 2),
    ((*CT0, "autostart"), True),
    ((*CT0, "ipv4"), {"address": [{"ip": "10.0.0.2", "prefix": 24}], "gateway": "10.0.0.1"}),
    (("systemd", "units", "getty@tty1.service"), {"enabled": True}),
    (("systemd", "units", "dev-sda.device"), {}),
    (("systemd", "units", "a\\x2db.mount"), {"active_state": "inactive"}),
    (("systemd", "units", "x" * 247 + ".service"), {"masked": True}),
]


@pytest.mark.parametrize(("loc", "value"), GOOD)
def test_good_value_is_kept(loc: tuple[Any, ...], value: Any) -> None:
    sections = accepted(with_value(loc, value))
    node: Any = sections
    for part in loc:
        node = node[part]
    assert node == value


def test_mac_is_normalised_to_lower_case() -> None:
    sections = accepted(with_value((*CT0, "hwaddr"), "02:AA:bb:00:00:01"))
    assert sections["lxc"]["containers"][0]["hwaddr"] == "02:aa:bb:00:00:01"


def test_unset_extensions_are_not_dumped_but_written_defaults_are() -> None:
    sections = accepted(with_value((*CT0, "state"), "present"))
    assert sections["lxc"]["containers"][0]["state"] == "present"
    assert "state" not in sections["lxc"]["containers"][1]
    assert "bridge" not in sections["net"]["interfaces"][0]


def test_null_section_counts_as_absent() -> None:
    loaded = parse_state('{"systemd": {"units": {}}, "net": null, "lxc": null}')
    assert loaded.state.sections() == {"systemd": {"units": {}}}
    assert str(loaded.mode) == "agent"
