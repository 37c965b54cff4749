"""The netlink phase's planning: every interface against one view, kept current as it goes."""

from __future__ import annotations

from op_dbus.native.netlink import OWN_PROTO, NetState, Route
from op_dbus.plugins.net.ipv4 import steps_for


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
