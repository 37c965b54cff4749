"""Static routes without a host: validation (paths, the `to` parser under hypothesis), the
diff's partial/prune/absent/rollback semantics, and the planned netlink steps."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from op_dbus.cli.render import show
from op_dbus.model import StateInputError, parse_state
from op_dbus.model.route_fields import check_route_to
from op_dbus.native.netlink import OWN_PROTO, KernelRoute, NetState
from op_dbus.plugins.net.diff import diff_net
from op_dbus.plugins.net.routes import Planner, RouteClash

VIA = "192.168.1.1"


def doc(routes: Any, kind: str = "ovs-bridge") -> str:
    entry: dict[str, Any] = {"name": "br0", "type": kind, "routes": routes}
    if kind != "ovs-bridge":
        entry["bridge"] = "up0"
    interfaces = [entry] if kind == "ovs-bridge" else [{"name": "up0", "type": "ovs-bridge"}, entry]
    return json.dumps({"version": 1, "plugins": {"net": {"interfaces": interfaces}}})


def problems(routes: Any, kind: str = "ovs-bridge") -> list[tuple[str, str]]:
    with pytest.raises(StateInputError) as info:
        parse_state(doc(routes, kind))
    return [(e.path, e.message) for e in info.value.errors]


def accepted(routes: Any) -> list[dict[str, Any]]:
    return parse_state(doc(routes)).state.sections()["net"]["interfaces"][0]["routes"]


R1 = "plugins.net.interfaces[0].routes[1]"
BAD = [
    ({"to": "10.0.0.1/8"}, f"{R1}.to", "has host bits set"),
    ({"to": "10.0.0.0/33"}, f"{R1}.to", "must be a network"),
    ({"to": "10.0.0.0/255.0.0.0"}, f"{R1}.to", "must be a network"),
    ({"to": "fe80::/64%eth0"}, f"{R1}.to", '"%" is not allowed'),
    ({"to": "224.0.0.0/4"}, f"{R1}.to", "multicast"),
    ({"to": "127.0.0.0/8"}, f"{R1}.to", "loopback"),
    ({"to": "0.0.0.0/0", "via": VIA}, f"{R1}.to", "that is ipv4.gateway"),
    ({"to": "x" * 65}, f"{R1}.to", "at most 64 characters"),
    ({"to": 10}, f"{R1}.to", "a string"),
    ({"to": "10.2.0.0/16", "via": "224.0.0.1"}, f"{R1}.via", "unicast"),
    ({"to": "10.2.0.0/16", "via": "2001:db8::1"}, f"{R1}.via", "is IPv6, but to"),
    ({"to": "2001:db8::/32", "via": VIA}, f"{R1}.via", "is IPv4, but to"),
    ({"to": "10.2.0.0/16", "metric": 2**32}, f"{R1}.metric", "from 0 to 4294967295"),
    ({"to": "10.2.0.0/16", "metric": True}, f"{R1}.metric", "from 0 to"),
    ({"to": "2001:db8::/32", "metric": 0}, f"{R1}.metric", "stores 0 as 1024"),
    ({"to": "10.2.0.0/16", "table": 0}, f"{R1}.table", "from 1 to"),
    ({"to": "10.2.0.0/16", "table": 253}, f"{R1}.table", "kernel's default table"),
    ({"to": "10.2.0.0/16", "table": 255}, f"{R1}.table", "kernel's local table"),
    ({"to": "10.2.0.0/16", "table": "local"}, f"{R1}.table", 'must be "main"'),
    ({"to": "10.1.0.0/16", "via": "192.168.1.2"}, R1, "repeats the route to 10.1.0.0/16"),
    ({"to": "10.2.0.0/16", "gateway": VIA}, f"{R1}.gateway", "unknown field"),
]


@pytest.mark.parametrize(("route", "path", "words"), BAD)
def test_a_bad_route_is_refused_at_its_path(route: dict[str, Any], path: str, words: str) -> None:
    found = problems([{"to": "10.1.0.0/16", "via": VIA}, route])
    assert any(p == path and words in m for p, m in found), found


def test_routes_only_go_on_bridges_and_internal_ports() -> None:
    assert accepted([{"to": "10.1.0.0/16"}])
    (found,) = problems([{"to": "10.1.0.0/16"}], "ovs-port")
    assert found[0] == "plugins.net.interfaces[1].routes"
    assert "ovs-internal port" in found[1]


def test_defaults_are_left_to_the_diff_and_spellings_are_normalised() -> None:
    routes = [
        {"to": "10.1.2.3", "via": VIA, "table": "main"},
        {"to": "0.0.0.0/0", "via": VIA, "table": 100},  # a default route elsewhere is fine
        {"to": "2001:db8:0::/48", "via": "2001:DB8::1"},
    ]
    assert accepted(routes) == [
        {"to": "10.1.2.3/32", "via": VIA, "table": 254},
        {"to": "0.0.0.0/0", "via": VIA, "table": 100},
        {"to": "2001:db8::/48", "via": "2001:db8::1"},
    ]


@given(st.ip_addresses(), st.integers(min_value=0, max_value=128))
def test_to_accepts_exactly_the_networks_whose_host_bits_are_zero(
    address: Any, length: int
) -> None:
    text = f"{address}/{length}"
    try:
        network = ipaddress.ip_network(text)  # strict: host bits must be zero
    except ValueError:
        network = None
    try:
        parsed = check_route_to(text)
    except ValueError as exc:
        assert network is None or network.is_multicast or network.is_loopback, exc
        return
    assert network is not None and parsed == str(network)
    assert check_route_to(parsed) == parsed  # query's spelling reads back as itself


@given(st.text(max_size=80))
def test_to_refuses_anything_else_with_a_message(text: str) -> None:
    try:
        parsed = check_route_to(text)
    except ValueError as exc:
        assert str(exc) and "Traceback" not in str(exc)
        return
    assert ipaddress.ip_network(parsed) == ipaddress.ip_network(text, strict=False)


# --- diff ---------------------------------------------------------------------------------
def route(to: str, via: str = VIA, *, metric: int = 0, table: int = 254) -> dict[str, Any]:
    return {"to": to, "via": via, "metric": metric, "table": table}


def current(*routes: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": "br0", "type": "ovs-bridge", "owned": True, "ports": []}
    entry["ipv4"] = {"enabled": True, "dhcp": False, "address": []}
    if routes:
        entry["routes"] = list(routes)
    return {"interfaces": [entry]}


def desired(routes: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": "br0", "type": "ovs-bridge"}
    if routes is not None:
        entry["routes"] = routes
    return {"interfaces": [entry]}


def after(actions: list[Any]) -> list[dict[str, Any]] | None:
    found = [a for a in actions if a.resource == "routes/br0"]
    return found[0].after["routes"] if found else None


A, B = route("10.1.0.0/16"), route("10.2.0.0/16", table=100)


def test_a_partial_file_adds_and_deletes_nothing_it_does_not_name() -> None:
    assert after(diff_net(current(A), desired(None))) is None
    assert after(
        diff_net(current(A), desired([{"to": "10.2.0.0/16", "via": VIA, "table": 100}]))
    ) == [A, B]
    assert after(diff_net(current(A, B), desired([{"to": "10.1.0.0/16", "via": VIA}]))) is None


def test_prune_makes_the_list_whole_and_absent_removes_one() -> None:
    listed = desired([{"to": "10.1.0.0/16", "via": VIA}])
    assert after(diff_net(current(A, B), listed, prune=True)) == [A]
    absent = desired([{"to": "10.2.0.0/16", "table": 100, "state": "absent"}])
    assert after(diff_net(current(A, B), absent)) == [A]
    assert after(diff_net(current(A), desired([{"to": "10.9.0.0/16", "state": "absent"}]))) is None


def test_a_new_via_replaces_the_route_of_its_key_and_a_new_metric_is_another_route() -> None:
    moved = desired([{"to": "10.1.0.0/16", "via": "192.168.1.2"}])
    assert after(diff_net(current(A), moved)) == [route("10.1.0.0/16", "192.168.1.2")]
    other = desired([{"to": "10.1.0.0/16", "via": VIA, "metric": 5}])
    assert after(diff_net(current(A), other)) == [A, route("10.1.0.0/16", metric=5)]


def test_a_rollback_restores_the_checkpoints_routes_and_drops_the_rest() -> None:
    checkpoint = current(A)
    assert after(diff_net(current(A, B), checkpoint, exhaustive=True)) == [A]
    assert after(diff_net(current(B), current(), exhaustive=True)) == []
    assert after(diff_net(current(A), checkpoint, exhaustive=True)) is None


def test_pasted_back_query_output_plans_nothing() -> None:
    read = current(A, B, route("192.0.2.0/26", "", metric=7))
    read["interfaces"][0]["routes"][2].pop("via")
    assert diff_net(read, read) == []


# --- planned steps ------------------------------------------------------------------------
def kernel(to: str, via: str = VIA, proto: int = OWN_PROTO, table: int = 254) -> KernelRoute:
    dst, _, length = to.partition("/")
    return KernelRoute(dst, int(length), "br0", via, table, 0, proto)


def view(*routes: KernelRoute) -> NetState:
    return NetState(index={"br0": 7}, up={"br0": True}, routes=list(routes))


def test_steps_add_before_they_remove_and_remove_only_ours() -> None:
    net = view(kernel("10.1.0.0/16"), kernel("10.3.0.0/16", proto=4))
    steps = Planner(net).steps({"name": "br0", "routes": [route("10.1.0.0/16", "192.168.1.2")]})
    assert [(s.command, dict(s.args)["gateway"]) for s in steps] == [
        ("append", "192.168.1.2"),
        ("del", VIA),
    ]
    assert all(dict(s.args)["proto"] == OWN_PROTO for s in steps)
    assert steps[1].gone_ok, "a route the kernel took with its subnet is already removed"
    assert (
        Planner(net)
        .steps({"name": "br0", "routes": []})[0]
        .what.startswith("removing route 10.1.0.0/16")
    )


def test_a_foreign_route_in_the_slot_is_refused_and_one_elsewhere_is_not() -> None:
    net = view(kernel("10.1.0.0/16", proto=4), kernel("10.2.0.0/16", proto=4, table=100))
    with pytest.raises(RouteClash, match="did not create"):
        Planner(net).steps({"name": "br0", "routes": [route("10.1.0.0/16", "192.168.1.2")]})
    (step,) = Planner(net).steps({"name": "br0", "routes": [route("10.2.0.0/16")]})
    assert dict(step.args)["table"] == 254


def test_an_on_link_route_has_link_scope_and_the_link_comes_up() -> None:
    net = view()
    net.up["br0"] = False
    up, add = Planner(net).steps(
        {"name": "br0", "routes": [{"to": "10.4.0.0/16", "metric": 0, "table": 254}]}
    )
    assert dict(up.args)["state"] == "up"
    assert dict(add.args)["scope"] == 253 and "gateway" not in dict(add.args)


def test_a_plan_spells_routes_as_ip_route_does() -> None:
    shown = show([route("10.1.0.0/16"), {"to": "10.2.0.0/16", "metric": 5, "table": 100}])
    assert shown == "[10.1.0.0/16 via 192.168.1.1, 10.2.0.0/16 table 100 metric 5]"
