"""The netlink phase's planning: every interface against one view, kept current as it goes."""

from __future__ import annotations

from op_dbus.native.netlink import KERNEL_PROTO, OWN_PROTO, KernelRoute, NetState, Route
from op_dbus.plugins.net.ipv4 import steps_for
from op_dbus.plugins.net.migrate import move_steps, moves, port_addresses


def view() -> NetState:
    return NetState(
        index={"a": 2, "b": 3, "c": 4},
        up={"a": True, "b": False, "c": True},
        addresses={"a": [("10.0.0.1", 24)], "b": [], "c": []},
        default_routes=[Route("10.0.0.254", "a", OWN_PROTO), Route("10.9.0.1", "c", 4)],
    )


def test_a_route_one_interface_removes_is_not_removed_again_by_the_next() -> None:
    net = view()
    steps = [
        *steps_for({"name": "a", "gateway": None}, net),
        *steps_for({"name": "b", "gateway": "10.1.0.254"}, net),
        *steps_for({"name": "b", "gateway": "10.1.0.254"}, net),  # already planned: nothing
    ]
    assert [s.what for s in steps] == [
        "removing default route via 10.0.0.254 dev a",
        "setting b up",
        "adding default route via 10.1.0.254 dev b",
    ]
    assert dict(steps[2].args)["oif"] == 3
    assert "10.9.0.1 dev c" in steps[2].hint  # the foreign route is named, never removed
    assert net.default_routes == [
        Route("10.9.0.1", "c", 4),
        Route("10.1.0.254", "b", OWN_PROTO),
    ]


def test_addresses_are_made_exact_and_the_view_follows() -> None:
    net = view()
    after = {"name": "a", "address": [{"ip": "10.0.0.2", "prefix": 24}]}
    steps = steps_for(after, net)
    assert [s.what for s in steps] == [
        "adding 10.0.0.2/24 to a",
        "setting a's promote_secondaries to 1",
        "removing 10.0.0.1/24 from a",
        "setting a's promote_secondaries to 0",
    ]
    assert all(dict(s.args)["index"] == 2 for s in steps if s.method == "addr")
    assert steps_for(after, net) == []


def test_a_link_goes_up_for_an_address_and_down_only_when_asked() -> None:
    net = view()
    assert [s.what for s in steps_for({"name": "b", "address": []}, net)] == []
    up = steps_for({"name": "b", "address": [{"ip": "10.2.0.1", "prefix": 16}]}, net)
    assert [s.what for s in up] == ["setting b up", "adding 10.2.0.1/16 to b"]
    down = steps_for({"name": "b", "enabled": False}, net)
    assert [s.what for s in down] == ["setting b down"]


def uplink() -> NetState:
    """eth0 holding the host's address and two routes; br0 just made by vswitchd, down."""
    default = KernelRoute("0.0.0.0", 0, "eth0", "192.168.1.1", proto=3)
    foreign = KernelRoute("10.9.0.0", 16, "eth0", "192.168.1.1", metric=50, table=100)
    return NetState(
        index={"eth0": 2, "br0": 3},
        up={"eth0": True, "br0": False},
        addresses={"eth0": [("192.168.1.10", 24), ("192.168.1.11", 24)], "br0": []},
        default_routes=[Route("192.168.1.1", "eth0", 3)],
        routes=[default, foreign, KernelRoute("192.168.1.0", 24, "eth0", proto=KERNEL_PROTO)],
    )


def test_a_move_makes_the_bridge_whole_before_the_port_gives_anything_up() -> None:
    net = uplink()
    held = port_addresses({"eth0", "br0"}, net)
    assert list(held) == ["eth0"]
    assert len(held["eth0"]["routes"]) == 2, "the kernel's subnet route is not copied"
    (action,) = moves({"eth0": {"name": "eth0", "bridge": "br0"}}, {"port_addresses": held}, None)
    assert (action.resource, action.after["name"], action.after["from"]) == (
        "address-move/eth0->br0",
        "br0",
        "eth0",
    )
    steps = move_steps(action.after, net)
    assert [s.what for s in steps] == [
        "setting br0 up",
        "adding 192.168.1.10/24 to br0",
        "adding 192.168.1.11/24 to br0",
        "adding route 0.0.0.0/0 via 192.168.1.1 dev br0 table 254 metric 0",
        "adding route 10.9.0.0/16 via 192.168.1.1 dev br0 table 100 metric 50",
        "removing route 0.0.0.0/0 via 192.168.1.1 dev eth0 table 254 metric 0",
        "removing route 10.9.0.0/16 via 192.168.1.1 dev eth0 table 100 metric 50",
        "removing 192.168.1.11/24 from eth0",  # the secondary before its primary
        "removing 192.168.1.10/24 from eth0",
    ]
    copied = dict(steps[4].args)
    assert (copied["oif"], copied["priority"], copied["table"], steps[4].command) == (
        3,
        50,
        100,
        "append",
    )
    assert dict(steps[3].args)["proto"] == 3, "a foreign route keeps its proto"
    assert all(s.undo is not None for s in steps), "every step of a move can be taken back"
    assert net.addresses["eth0"] == [] and Route("192.168.1.1", "br0", 3) in net.default_routes
    assert move_steps(action.after, net) == []


def test_a_rollback_gives_the_port_back_what_its_checkpoint_held() -> None:
    net = uplink()
    checkpoint = {"port_addresses": port_addresses({"eth0"}, net)}
    now = {"interfaces": [{"name": "eth0", "type": "ovs-port", "bridge": "br0"}]}
    (action,) = moves({}, now, checkpoint)
    assert action.resource == "address-move/br0->eth0"
    assert action.after["address"] == [
        {"ip": "192.168.1.10", "prefix": 24},
        {"ip": "192.168.1.11", "prefix": 24},
    ]
    assert moves({}, {**now, **checkpoint}, checkpoint) == []
