"""IPv6 on interfaces and containers: what validation refuses (at its path), the diff's
partial/prune/absent semantics, the netlink steps, and the LXC config lines."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from op_dbus.model import StateInputError, parse_state
from op_dbus.model.fields import check_ipv6, check_ipv6_gateway, check_prefix6
from op_dbus.native.lxc_config import Nic, Spec, parse, render
from op_dbus.native.netlink import OWN_PROTO, NetState, Route
from op_dbus.native.sockets import parse_table
from op_dbus.plugins.lxc.diff import RESTART_FIELDS, diff_lxc
from op_dbus.plugins.net.danger import Lifelines, mark
from op_dbus.plugins.net.diff import diff_net
from op_dbus.plugins.net.ipv6 import ipv6_of, steps_for
from op_dbus.plugins.net.watcher import GROUPS, RTMGRP_IPV6_IFADDR, RTMGRP_IPV6_ROUTE

DIR = Path("/var/lib/lxc/gateway")


def problems(net: dict[str, Any], lxc: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    doc: dict[str, Any] = {"version": 1, "plugins": {"net": net}}
    if lxc is not None:
        doc["plugins"]["lxc"] = lxc
    with pytest.raises(StateInputError) as info:
        parse_state(json.dumps(doc))
    return [(e.path, e.message) for e in info.value.errors]


def bridge(ipv6: dict[str, Any], name: str = "br0") -> dict[str, Any]:
    return {"name": name, "type": "ovs-bridge", "ipv6": ipv6}


def address(ip: str, prefix: int = 64, **extra: Any) -> dict[str, Any]:
    return {"ip": ip, "prefix": prefix, **extra}


# --- validation ---------------------------------------------------------------------------
@given(st.ip_addresses(v=6))
def test_an_ipv6_address_is_a_hosts_or_refused(ip: ipaddress.IPv6Address) -> None:
    unusable = (
        ip.is_unspecified
        or ip.is_multicast
        or ip.is_loopback
        or ip.is_link_local
        or ip.ipv4_mapped is not None
    )
    for spelling in (ip.exploded, ip.exploded.upper(), ip.compressed):
        if unusable:
            with pytest.raises(ValueError):
                check_ipv6(spelling)
        else:
            assert check_ipv6(spelling) == ip.compressed  # one spelling, as netlink lists it


@given(st.ip_addresses(v=6))
def test_a_gateway_may_be_link_local_but_nothing_else_unusable(ip: ipaddress.IPv6Address) -> None:
    if ip.is_unspecified or ip.is_multicast or ip.is_loopback or ip.ipv4_mapped is not None:
        with pytest.raises(ValueError):
            check_ipv6_gateway(str(ip))
    else:
        assert check_ipv6_gateway(str(ip)) == ip.compressed


@given(st.one_of(st.text(max_size=60), st.integers(), st.none(), st.booleans()))
def test_anything_else_is_a_clear_value_error(value: Any) -> None:
    try:
        result = check_ipv6(value)
    except ValueError as exc:
        assert "IPv6" in str(exc) or "address" in str(exc)
    else:
        assert ipaddress.IPv6Address(result) == ipaddress.IPv6Address(value)


@given(st.one_of(st.integers(-1000, 1000), st.booleans(), st.text(max_size=4)))
def test_a_prefix_is_1_to_128(value: Any) -> None:
    if type(value) is int and 1 <= value <= 128:
        assert check_prefix6(value) == value
    else:
        with pytest.raises(ValueError):
            check_prefix6(value)


@pytest.mark.parametrize(
    ("entry", "path", "word"),
    [
        (address("fe80::1"), "address[0].ip", "link-local"),
        (address("ff02::1"), "address[0].ip", "unicast"),
        (address("::1"), "address[0].ip", "loopback"),
        (address("::"), "address[0].ip", "unicast"),
        (address("::ffff:10.0.0.1"), "address[0].ip", "unicast"),
        (address("10.0.0.1"), "address[0].ip", "IPv6"),
        (address("2001:db8::1", 0), "address[0].prefix", "prefix 0"),
        (address("2001:db8::1", 129), "address[0].prefix", "1 to 128"),
        (address("2001:db8::", 64), "address[0].ip", "subnet-router anycast"),
    ],
)
def test_a_bad_address_is_refused_at_its_path(entry: dict, path: str, word: str) -> None:
    found = problems({"interfaces": [bridge({"address": [entry]})]})
    assert [p for p, _ in found] == [f"plugins.net.interfaces[0].ipv6.{path}"], found
    assert word in found[0][1]


def test_a_gateway_is_on_link_or_link_local_and_not_our_own() -> None:
    ok = {"address": [address("2001:db8::1")], "gateway": "fe80::1"}
    parse_state(json.dumps({"net": {"interfaces": [bridge(ok)]}}))
    for gateway, word in (("2001:db9::1", "not inside"), ("2001:db8::1", "own address")):
        found = problems({"interfaces": [bridge({**ok, "gateway": gateway})]})
        assert [p for p, _ in found] == ["plugins.net.interfaces[0].ipv6.gateway"], found
        assert word in found[0][1]


def test_rules_mirror_ipv4s() -> None:
    found = problems(
        {
            "interfaces": [
                bridge({"enabled": False, "address": [address("2001:db8::1")]}),
                bridge({"address": [address("2001:db8::1")], "gateway": "fe80::1"}, "br1"),
                bridge({"gateway": "fe80::2"}, "br2"),
                {"name": "eth9", "type": "ovs-port", "bridge": "br0", "ipv6": {}},
            ]
        }
    )
    paths = {p: m for p, m in found}
    base = "plugins.net.interfaces"
    assert "is false" in paths[f"{base}[0].ipv6.enabled"]
    assert "already declared" in paths[f"{base}[1].ipv6.address[0].ip"]
    assert "ipv6.gateway on one interface" in paths[f"{base}[2].ipv6.gateway"]
    assert "not allowed on an ovs-port" in paths[f"{base}[3].ipv6"]


def test_ipv4_taking_the_link_down_conflicts_with_ipv6_addresses() -> None:
    entry = {**bridge({"address": [address("2001:db8::1")]}), "ipv4": {"enabled": False}}
    found = problems({"interfaces": [entry]})
    assert [p for p, _ in found] == ["plugins.net.interfaces[0].ipv4.enabled"], found
    assert "ipv6 sets address" in found[0][1]


def test_the_daemon_hears_ipv6_addresses_and_routes() -> None:
    assert GROUPS & RTMGRP_IPV6_IFADDR and GROUPS & RTMGRP_IPV6_ROUTE


def test_a_container_nic_carries_ipv6_and_one_default_route() -> None:
    nic = {"veth": "vi1", "bridge": "br0", "ipv6": {"gateway": "fe80::1"}}
    lxc = {"containers": [{"id": "100", "nics": [nic, {**nic, "veth": "vi2"}]}]}
    found = problems({"interfaces": [bridge({})]}, lxc)
    assert [p for p, _ in found] == ["plugins.lxc.containers[0].nics[1].ipv6.gateway"], found
    single = {"id": "100", "ipv6": {"address": [address("2001:db8::2")]}, "nics": [nic]}
    found = problems({"interfaces": [bridge({})]}, {"containers": [single]})
    assert [p for p, _ in found] == ["plugins.lxc.containers[0].ipv6"], found


def test_addresses_are_kept_in_one_spelling() -> None:
    doc = parse_state(
        json.dumps({"net": {"interfaces": [bridge({"address": [address("2001:DB8:0::A")]})]}})
    )
    assert doc.state.sections()["net"]["interfaces"][0]["ipv6"]["address"][0]["ip"] == "2001:db8::a"


# --- diff ---------------------------------------------------------------------------------
def current(*ips: str, gateway: str | None = None) -> dict[str, Any]:
    ipv6: dict[str, Any] = {"enabled": True, "address": [address(ip) for ip in ips]}
    if gateway:
        ipv6["gateway"] = gateway
    entry = {"name": "br0", "type": "ovs-bridge", "owned": True, "ipv6": ipv6}
    return {"interfaces": [entry]}


def desired(ipv6: dict[str, Any]) -> dict[str, Any]:
    return {"interfaces": [bridge(ipv6)]}


def test_a_query_pasted_back_plans_nothing() -> None:
    here = current("2001:db8::1", "fd00::1", gateway="fe80::1")
    assert diff_net(here, here) == []
    assert diff_net(here, here, prune=True) == []
    assert diff_net(here, here, exhaustive=True) == []


def test_a_partial_file_adds_and_deletes_nothing_prune_and_absent_remove() -> None:
    here = current("2001:db8::1")
    (action,) = diff_net(here, desired({"address": [address("2001:db8::2")]}))
    assert (action.resource, action.after["address"]) == (
        "ipv6/br0",
        [address("2001:db8::1"), address("2001:db8::2")],
    )
    (pruned,) = diff_net(here, desired({"address": [address("2001:db8::2")]}), prune=True)
    assert pruned.after["address"] == [address("2001:db8::2")]
    gone = desired({"address": [address("2001:db8::1", state="absent")]})
    assert diff_net(here, gone)[0].after["address"] == []


def test_ipv4_and_ipv6_are_separate_actions_and_a_rollback_drops_our_gateway() -> None:
    here = current("2001:db8::1", gateway="2001:db8::fe")
    want = {"interfaces": [{**bridge({}), "ipv4": {"address": [{"ip": "10.0.0.1", "prefix": 24}]}}]}
    assert [a.resource for a in diff_net(here, want)] == ["ipv4/br0"]
    checkpoint = current("2001:db8::1")
    (back,) = diff_net(here, checkpoint, exhaustive=True)
    assert (back.resource, back.after) == ("ipv6/br0", {"name": "br0", "gateway": None})


# --- netlink steps --------------------------------------------------------------------------
def view(**extra: Any) -> NetState:
    net = NetState(
        index={"br0": 5, "br1": 6},
        up={"br0": True, "br1": False},
        addresses6={"br0": [("2001:db8::1", 64)], "br1": []},
        default_routes6=[Route("fe80::1", "br1", OWN_PROTO)],
        ipv6_on={"br0": True, "br1": False},
    )
    for key, value in extra.items():
        setattr(net, key, value)
    return net


def test_steps_make_before_break_and_the_view_follows() -> None:
    net = view()
    after = {"name": "br0", "address": [address("2001:db8::2")], "gateway": "2001:db8::fe"}
    steps = steps_for(after, net)
    assert [s.what for s in steps] == [
        "adding 2001:db8::2/64 to br0",
        "removing 2001:db8::1/64 from br0",
        "removing default route via fe80::1 dev br1",
        "adding default route via 2001:db8::fe dev br0",
    ]
    args = dict(steps[-1].args)
    assert (args["dst"], args["proto"], args["oif"]) == ("::/0", OWN_PROTO, 5)
    assert steps_for(after, net) == []
    assert net.default_routes6 == [Route("2001:db8::fe", "br0", OWN_PROTO)]


def test_addresses_turn_ipv6_on_and_the_link_up_and_off_drops_them() -> None:
    net = view()
    steps = steps_for({"name": "br1", "address": [address("fd00::1")]}, net)
    assert [s.what for s in steps] == [
        "turning IPv6 on on br1",
        "setting br1 up",
        "adding fd00::1/64 to br1",
    ]
    assert dict(steps[0].args) == {"path": "/proc/sys/net/ipv6/conf/br1/disable_ipv6", "value": 0}
    off = steps_for({"name": "br1", "enabled": False}, net)
    assert [s.what for s in off] == ["turning IPv6 off on br1"]
    assert ipv6_of("br1", net) == {"enabled": False, "address": []}


def test_a_foreign_default_route_is_never_removed() -> None:
    net = view(default_routes6=[Route("fe80::1", "br1", 4)])
    steps = steps_for({"name": "br0", "gateway": "fe80::2"}, net)
    assert [s.what for s in steps] == ["adding default route via fe80::2 dev br0"]
    assert "fe80::1 dev br1" in steps[0].hint


# --- lxc ----------------------------------------------------------------------------------
def test_the_lxc_config_says_ipv6_and_reads_back() -> None:
    spec = Spec(
        name="gateway", id="100", veth="vi100", bridge="br0",
        addresses6=(("2001:db8::2", 64),), gateway6="2001:db8::1",
    )  # fmt: skip
    text = render("lxc.uts.name = gateway\n", spec, DIR)
    assert "lxc.net.0.ipv6.address = 2001:db8::2/64" in text.splitlines()
    assert "lxc.net.0.ipv6.gateway = 2001:db8::1" in text.splitlines()
    parsed = parse(text)
    assert (parsed.addresses6, parsed.gateway6) == ([("2001:db8::2", 64)], "2001:db8::1")


def test_a_containers_ipv6_change_restarts_it() -> None:
    have = {
        "name": "ct", "id": "100", "owned": True, "running": True,
        "ipv6": {"address": [address("2001:db8::2")]},
    }  # fmt: skip
    assert diff_lxc({"containers": [have]}, {"containers": [dict(have)]}) == []
    want = {**have, "ipv6": {"address": [address("2001:db8::3")], "gateway": "fe80::1"}}
    (action,) = diff_lxc({"containers": [have]}, {"containers": [want]})
    assert action.after["ipv6"] == {"address": [address("2001:db8::3")], "gateway": "fe80::1"}
    assert "ipv6" in RESTART_FIELDS


# --- danger ---------------------------------------------------------------------------------
TABLE6 = """  sl  local_address                         remote_address                        st
   0: B80D0120000000000000000001000000:0016 B80D0120000000000000000002000000:D431 01 0
   1: B80D0120000000000000000003000000:0016 B80D0120000000000000000002000000:D432 0A 0
"""


def test_an_ipv6_session_is_a_lifeline_its_address_and_our_route_are_dangerous() -> None:
    assert parse_table(TABLE6) == {"2001:db8::1"}  # established only; as the kernel's bytes
    six = Lifelines(
        routes={"br0": "2001:db8::fe"},
        addresses={"br0": [("2001:db8::1", 64)]},
        sessions=frozenset({"2001:db8::1"}),
        own_routes=frozenset({"br0"}),
    )
    lines = Lifelines(sessions=six.sessions, ipv6=six)
    here = current("2001:db8::1", gateway="2001:db8::fe")
    actions = diff_net(
        here, desired({"address": [address("fd00::1")], "gateway": "fd00::fe"}), prune=True
    )
    (action,) = mark(here, actions, lines)
    assert any("local end of live TCP sessions" in why for why in action.dangerous)
    assert any("way to the default gateway 2001:db8::fe" in why for why in action.dangerous)
    assert any("replaces the default route via 2001:db8::fe" in why for why in action.dangerous)
    (off,) = mark(here, diff_net(here, desired({"enabled": False})), lines)
    assert off.dangerous and off.dangerous[0].startswith("turns IPv6 off on br0")
    (adding,) = mark(here, diff_net(here, desired({"address": [address("fd00::1")]})), lines)
    assert adding.dangerous == ()


def test_every_nic_says_its_ipv6_and_reads_back() -> None:
    second = Nic(veth="vi101", bridge="br1", addresses6=(("fd00::2", 64),), gateway6="fe80::1")
    spec = Spec(name="gateway", id="100", veth="vi100", bridge="br0", more_nics=(second,))
    text = render("lxc.uts.name = gateway\n", spec, DIR)
    assert "lxc.net.1.ipv6.address = fd00::2/64" in text.splitlines()
    assert "lxc.net.1.ipv6.gateway = fe80::1" in text.splitlines()
    assert not any(line.startswith("lxc.net.0.ipv6") for line in text.splitlines())
    (back,) = parse(text).more_nics
    assert (back.addresses6, back.gateway6) == ((("fd00::2", 64),), "fe80::1")
