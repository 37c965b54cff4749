"""The firewall section: its validation, its nft JSON both ways, and its diff (pure logic).

The nft side is checked against the real nft in tests/lab/test_firewall_apply.py; here a
listing is what `nft -j list ruleset` prints for what `render` sent (measured with nft 1.0.6:
the same objects with handles added).
"""

from __future__ import annotations

import asyncio
import copy
import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from op_dbus.errors import Refused
from op_dbus.model import StateInputError, load_state, parse_state
from op_dbus.model.fields import check_cidr, check_target
from op_dbus.plugins.base import ActionKind
from op_dbus.plugins.firewall.plugin import FirewallPlugin, diff_firewall
from op_dbus.plugins.firewall.ruleset import FILTER, NAT, empty_section, parse, render

EXAMPLES = Path(__file__).parents[2] / "examples"
GATEWAY = {
    "enable": True,
    "masquerade": [{"source": "10.0.0.0/24", "out_interface": "ovsbr0"}],
    "allow_tcp": [22, 9573],
    "allow_udp": [],
    "trusted_interfaces": ["mesh"],
    "forward_ports": [
        {"proto": "tcp", "port": 8080, "to": "10.0.0.101:80", "in_interface": "ovsbr0"},
        {"proto": "udp", "port": 53, "to": "10.0.0.100"},
    ],
}


def listing(commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What nft lists after running `commands` on a rule set without our tables."""
    objects: list[dict[str, Any]] = []
    for handle, command in enumerate(commands, start=1):
        ((verb, obj),) = command.items()
        ((kind, body),) = obj.items()
        if verb == "delete":
            objects = [o for o in objects if _table_of(o) != (body["family"], body["name"])]
        elif kind != "table" or {kind: body} not in objects:
            objects.append({kind: body | ({"handle": handle} if kind != "table" else {})})
    return objects


def _table_of(obj: dict[str, Any]) -> tuple[str, str]:
    ((kind, body),) = obj.items()
    return (body["family"], body["name"] if kind == "table" else body["table"])


def load(section: dict[str, Any]) -> dict[str, Any]:
    return parse_state(json.dumps({"firewall": section})).state.sections()["firewall"]


def errors(section: dict[str, Any]) -> list[str]:
    with pytest.raises(StateInputError) as caught:
        load(section)
    return [str(e) for e in caught.value.errors]


def test_the_gateway_section_renders_one_transaction_that_parses_back_to_itself() -> None:
    commands = render(GATEWAY)
    assert commands[:4] == [
        {"add": {"table": {"family": "inet", "name": "op-dbus"}}},
        {"delete": {"table": {"family": "inet", "name": "op-dbus"}}},
        {"add": {"table": {"family": "ip", "name": "op-dbus-nat"}}},
        {"delete": {"table": {"family": "ip", "name": "op-dbus-nat"}}},
    ], "both tables go first, whether or not they exist"
    tables = {_table_of(c["add"]) for c in commands if "add" in c}
    assert tables == {FILTER, NAT}, "nothing outside our two tables"
    assert parse(listing(commands)) == GATEWAY | {"unrecognised": []}


def test_nothing_declared_removes_both_tables_and_reads_back_empty() -> None:
    commands = render(empty_section())
    assert [next(iter(c)) for c in commands] == ["add", "delete", "add", "delete"]
    assert parse(listing(commands)) == empty_section() | {"unrecognised": []}


def test_a_rule_added_or_edited_by_hand_in_our_table_is_unrecognised() -> None:
    objects = listing(render(GATEWAY))
    extra = {"family": "inet", "table": "op-dbus", "chain": "input", "handle": 99}
    port23 = {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}}}
    port23["match"]["right"] = 23
    added = [*objects, {"rule": extra | {"expr": [port23, {"accept": None}]}}]
    found = parse(added)
    assert found["allow_tcp"] == [22, 9573] and found["unrecognised"] == [
        "rule inet op-dbus input handle 99 (no comment)"
    ]
    edited = copy.deepcopy(objects)
    rule = next(o["rule"] for o in edited if o.get("rule", {}).get("comment") == "masquerade")
    rule["expr"].insert(1, {"counter": {"packets": 0, "bytes": 0}})
    found = parse(edited)
    assert found["masquerade"] == [] and len(found["unrecognised"]) == 1
    policy = copy.deepcopy(objects)
    next(o["chain"] for o in policy if "chain" in o)["policy"] = "accept"
    assert parse(policy)["unrecognised"], "an input chain that accepts is not ours"


PORTS = st.lists(st.integers(1, 65535), unique=True, max_size=4)
NAMES = st.lists(st.sampled_from(["mesh", "ovsbr0", "lan0", "eth1.10"]), unique=True)
CIDRS = st.sampled_from(["10.0.0.0/24", "10.0.0.5/32", "192.168.0.0/16", "0.0.0.0/0"])
MASQ = st.fixed_dictionaries({"source": CIDRS}, optional={"out_interface": st.just("ovsbr0")})
FWD = st.fixed_dictionaries(
    {
        "proto": st.sampled_from(["tcp", "udp"]),
        "port": st.integers(1, 65535),
        "to": st.sampled_from(["10.0.0.2", "10.0.0.3:65535"]),
    },
    optional={"in_interface": st.just("eth0")},
)
SECTIONS = st.fixed_dictionaries(
    {
        "enable": st.booleans(),
        "masquerade": st.lists(MASQ, max_size=3),
        "allow_tcp": PORTS,
        "allow_udp": PORTS,
        "trusted_interfaces": NAMES,
        "forward_ports": st.lists(FWD, max_size=3),
    }
)


@settings(max_examples=200, deadline=None)
@given(SECTIONS)
def test_every_section_reads_back_as_itself(section: dict[str, Any]) -> None:
    expected = copy.deepcopy(section)
    if not section["enable"]:  # the filter's lists live in its chain
        expected |= {"allow_tcp": [], "allow_udp": [], "trusted_interfaces": []}
    assert parse(listing(render(section))) == expected | {"unrecognised": []}


def test_validation_names_each_bad_field() -> None:
    found = errors(
        {
            "allow_tcp": [22, 0, 22],
            "masquerade": [{"source": "10.0.0.1/24"}, {"source": "10.0.0.0/33"}],
            "trusted_interfaces": ["a b", "-x"],
            "forward_ports": [
                {"proto": "icmp", "port": 1, "to": "10.0.0.1"},
                {"proto": "tcp", "port": 80, "to": "10.0.0.1:99999"},
                {"proto": "tcp", "port": 80, "to": "127.0.0.1:8"},
            ],
            "allow_udp": ["53"],
            "forward": "yes",
        }
    )
    expected = [
        "firewall.allow_tcp[1]: must be a port from 1 to 65535, got 0",
        "firewall.allow_tcp[2]: repeats 22 (also at firewall.allow_tcp[0])",
        'firewall.masquerade[0].source: has host bits set: "10.0.0.1/24" lies in 10.0.0.0/24;'
        " write 10.0.0.0/24",
        "firewall.masquerade[1].source: must be an IPv4 network like 10.0.0.0/24",
        "firewall.trusted_interfaces[0]: must be 1 to 15 characters",
        "firewall.trusted_interfaces[1]: must not start with '-'",
        'firewall.forward_ports[0].proto: must be "tcp" or "udp", got "icmp"',
        "firewall.forward_ports[1].to: must end in a port from 1 to 65535 after ':'",
        "firewall.forward_ports[2].to: must not be a loopback address",
        'firewall.allow_udp[0]: must be a port from 1 to 65535, got "53"',
        "firewall.forward: ",
    ]
    for line in expected:
        assert any(e.startswith(line) for e in found), f"{line!r} not in {found}"
    assert not any("Error" in e or "pydantic" in e for e in found)


def test_a_bare_address_is_a_32_and_every_example_stays_valid() -> None:
    assert load({"masquerade": [{"source": "10.0.0.5"}]})["masquerade"] == [
        {"source": "10.0.0.5/32"}
    ]
    for example in EXAMPLES.glob("*.json"):
        parse_state(example.read_text(), origin=str(example))
    gateway_host = load_state(EXAMPLES / "gateway-host.yaml")
    assert str(gateway_host.mode) == "full" and gateway_host.shape == "stateConfig"
    sections = gateway_host.state.sections()
    assert sections["firewall"]["masquerade"] == [
        {"source": "10.0.0.0/24", "out_interface": "ovsbr0"}
    ]
    protected = {c["name"]: c["protected"] for c in sections["lxc"]["containers"]}
    assert protected == {"gateway": False, "warp": True, "xray-client": True}


def test_forward_ports_may_not_send_one_port_two_ways() -> None:
    twice = {"proto": "tcp", "port": 80, "to": "10.0.0.2"}
    found = errors({"forward_ports": [twice, twice | {"to": "10.0.0.3"}]})
    assert found == [
        "firewall.forward_ports[1]: repeats this rule (also at firewall.forward_ports[0])"
    ]


def current(**fields: Any) -> dict[str, Any]:
    return empty_section() | {"forward": False, "unrecognised": []} | fields


def test_diff_lays_the_files_fields_over_the_hosts() -> None:
    host = current(allow_tcp=[22], enable=True)
    (action,) = diff_firewall(host, {"masquerade": [{"source": "10.0.0.0/24"}]})
    assert (action.kind, action.resource) == (ActionKind.MODIFY, "ruleset")
    assert action.after["allow_tcp"] == [22] and action.after["enable"] is True
    assert action.after["masquerade"] == [{"source": "10.0.0.0/24"}]
    assert diff_firewall(host, {}) == [], "an empty section declares nothing"
    assert diff_firewall(host, {"allow_tcp": [22], "forward": False}) == []
    (forward,) = diff_firewall(host, {"forward": True})
    assert (forward.resource, forward.before, forward.after) == (
        "forward",
        {"forward": False},
        {"forward": True},
    )


def test_drift_in_our_tables_is_a_change_even_when_the_fields_agree() -> None:
    host = current(allow_tcp=[22], enable=True, unrecognised=["rule inet op-dbus input ..."])
    (action,) = diff_firewall(host, {"allow_tcp": [22]})
    assert action.before["unrecognised"] == ["rule inet op-dbus input ..."]
    assert action.after["unrecognised"] == [], "shown going away: the apply rebuilds our tables"


def test_rollback_to_a_checkpoint_restores_every_field() -> None:
    checkpoint = current(forward=False)
    now = current(forward=True, enable=True, allow_tcp=[22])
    actions = diff_firewall(now, checkpoint, exhaustive=True)
    assert [(a.resource, a.after.get("enable"), a.after.get("forward")) for a in actions] == [
        ("ruleset", False, None),
        ("forward", None, False),
    ]


def test_filter_fields_without_the_filter_are_refused() -> None:
    plugin = FirewallPlugin()
    with pytest.raises(Refused, match="allow_tcp would apply only with the input filter on"):
        asyncio.run(plugin.check(current(), {"allow_tcp": [22]}, {}))
    asyncio.run(plugin.check(current(enable=True), {"allow_tcp": [22]}, {}))
    filtering = current(enable=True, allow_tcp=[22])
    asyncio.run(plugin.check(filtering, {"enable": False}, {}))
    (action,) = diff_firewall(filtering, {"enable": False})
    assert action.after["allow_tcp"] == [], "the filter's lists go with it"
    assert diff_firewall(current(), {"enable": False, "allow_tcp": []}) == []
    asyncio.run(plugin.check(current(), {"allow_tcp": [22], "enable": True}, {}))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="0123456789./: -x", max_size=24))
def test_cidr_and_target_accept_only_what_ipaddress_agrees_with(text: str) -> None:
    try:
        cidr = check_cidr(text)
    except ValueError as exc:
        assert str(exc).startswith(("must be", "has host bits set"))
    else:
        network = ipaddress.IPv4Network(cidr)  # strict: host bits are zero
        assert str(network) == cidr and cidr.split("/")[0] == text.split("/")[0]
    try:
        target = check_target(text)
    except ValueError as exc:
        assert str(exc).startswith("must")
    else:
        address, _, port = target.partition(":")
        ipaddress.IPv4Address(address)
        assert not port or 1 <= int(port) <= 65535
