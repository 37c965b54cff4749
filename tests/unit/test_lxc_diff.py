"""The lxc plugin's diff: partial desired state, ownership, rollback and stale ports."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from op_dbus.errors import Refused
from op_dbus.plugins.base import ActionKind
from op_dbus.plugins.lxc.diff import container_name, diff_lxc

SEED = {
    "containers": [
        {"id": "100", "name": "gateway", "veth": "vi100", "bridge": "mesh", "running": True},
        {"id": "101", "name": "warp", "veth": "vi101", "bridge": "mesh", "running": True},
        {"id": "102", "name": "xray-client", "veth": "vi102", "bridge": "mesh", "running": True},
    ]
}


def host(
    name: str, ct_id: str | None, *, running: bool = True, owned: bool = True, **extra: Any
) -> dict[str, Any]:
    """A container as query() reports it."""
    number = int(ct_id or 0)
    entry = {
        "id": ct_id,
        "name": name,
        "veth": f"vi{ct_id}",
        "bridge": "mesh",
        "template": "busybox",
        "ipv4": {"address": []},
        "hwaddr": f"02:00:00:00:00:{number:02x}",
        "autostart": False,
        "running": running,
        "state": "present",
        "owned": owned,
        "pid": 4242 if running else None,
    }
    return {**entry, **extra}


def seed_host() -> dict[str, Any]:
    return {
        "containers": [host(c["name"], c["id"]) for c in SEED["containers"]],
        "stale_ports": [],
    }


def kinds(actions: list) -> list[tuple[str, str]]:
    return [(str(a.kind), a.resource) for a in actions]


def test_seed_on_an_empty_host_creates_three_with_defaults() -> None:
    actions = diff_lxc({"containers": []}, SEED)
    assert kinds(actions) == [
        ("create", "container/gateway"),
        ("create", "container/warp"),
        ("create", "container/xray-client"),
    ]
    after = actions[0].after
    assert after["hwaddr"] == "02:00:00:00:00:64"
    assert (after["template"], after["running"], after["veth"]) == ("busybox", True, "vi100")


def test_created_container_is_not_started_unless_asked() -> None:
    (action,) = diff_lxc({"containers": []}, {"containers": [{"id": "200", "name": "x"}]})
    assert action.after["running"] is False
    assert action.after["hwaddr"] == "02:00:00:00:00:c8"


def test_matching_host_needs_nothing() -> None:
    assert diff_lxc(seed_host(), SEED) == []


def test_name_defaults_to_the_id() -> None:
    assert container_name({"id": "300"}) == "300"
    (action,) = diff_lxc({"containers": []}, {"containers": [{"id": "300"}]})
    assert action.resource == "container/300"


def test_fields_left_out_are_left_alone() -> None:
    current = seed_host()
    current["containers"][0]["autostart"] = True
    current["containers"][0]["ipv4"] = {"address": [{"ip": "10.0.0.2", "prefix": 24}]}
    assert diff_lxc(current, {"containers": [{"id": "100", "name": "gateway"}]}) == []


def test_a_container_missing_from_the_file_is_never_touched() -> None:
    current = seed_host()
    current["containers"].append(host("byhand", None, owned=False))
    assert diff_lxc(current, {"containers": SEED["containers"][:1]}) == []


def test_stopped_container_is_started_and_running_one_stopped() -> None:
    current = seed_host()
    current["containers"][0]["running"] = False
    desired = copy.deepcopy(SEED)
    desired["containers"][1]["running"] = False
    actions = diff_lxc(current, desired)
    assert [(a.resource, a.before["running"], a.after) for a in actions] == [
        ("container/gateway", False, {"name": "gateway", "running": True}),
        ("container/warp", True, {"name": "warp", "running": False}),
    ]


def test_lost_port_and_moved_bridge_are_bridge_changes() -> None:
    current = seed_host()
    current["containers"][0]["bridge"] = None  # running, port deleted by hand
    desired = copy.deepcopy(SEED)
    desired["containers"][1]["bridge"] = "other"
    actions = diff_lxc(current, desired)
    assert [(a.resource, a.after) for a in actions] == [
        ("container/gateway", {"name": "gateway", "bridge": "mesh"}),
        ("container/warp", {"name": "warp", "bridge": "other"}),
    ]


def test_ipv4_change_keeps_the_fields_not_given() -> None:
    current = seed_host()
    current["containers"][0]["ipv4"] = {"address": [{"ip": "10.0.0.2", "prefix": 24}]}
    desired = {"containers": [{"id": "100", "name": "gateway", "ipv4": {"gateway": "10.0.0.1"}}]}
    (action,) = diff_lxc(current, desired)
    assert action.after["ipv4"] == {
        "address": [{"ip": "10.0.0.2", "prefix": 24}],
        "gateway": "10.0.0.1",
    }
    same = {"containers": [{"id": "100", "ipv4": {"address": [{"ip": "10.0.0.2", "prefix": 24}]}}]}
    same["containers"][0]["name"] = "gateway"
    assert diff_lxc(current, same) == []


def test_absent_destroys_only_owned_containers() -> None:
    current = seed_host()
    current["containers"].append(host("byhand", None, owned=False))
    gone = {"containers": [{"id": "102", "name": "xray-client", "state": "absent"}]}
    (action,) = diff_lxc(current, gone)
    assert (action.kind, action.resource) == (ActionKind.DELETE, "container/xray-client")
    foreign = {"containers": [{"id": "150", "name": "byhand", "state": "absent"}]}
    with pytest.raises(Refused, match=r"container/byhand: .*did not create it"):
        diff_lxc(current, foreign)
    assert diff_lxc(current, {"containers": [{"id": "999", "state": "absent"}]}) == []


def test_foreign_container_may_be_started_but_not_reconfigured() -> None:
    current = {"containers": [host("byhand", None, running=False, owned=False, veth=None)]}
    start = {"containers": [{"id": "150", "name": "byhand", "running": True}]}
    assert kinds(diff_lxc(current, start)) == [("modify", "container/byhand")]
    wire = {"containers": [{"id": "150", "name": "byhand", "veth": "vi150"}]}
    with pytest.raises(Refused, match="did not create this container"):
        diff_lxc(current, wire)


def test_resource_limits_compare_in_mib() -> None:
    current = seed_host()
    current["containers"][0] |= {"memory": 512, "cpus": None}
    same = {"containers": [{"id": "100", "name": "gateway", "memory": "512M"}]}
    assert diff_lxc(current, same) == []
    more = {"containers": [{"id": "100", "name": "gateway", "memory": "2G", "cpus": 2}]}
    (action,) = diff_lxc(current, more)
    assert action.after == {"name": "gateway", "memory": 2048, "cpus": 2}
    (created,) = diff_lxc({"containers": []}, {"containers": [{"id": "300", "memory": 64}]})
    assert (created.after["memory"], created.after["cpus"]) == (64, None)


def test_rollback_removes_limits_the_checkpoint_did_not_have() -> None:
    checkpoint = seed_host()
    checkpoint["containers"][0] |= {"memory": None, "cpus": None}
    now = copy.deepcopy(checkpoint)
    now["containers"][0]["memory"] = 64
    (action,) = diff_lxc(now, checkpoint, exhaustive=True)
    assert action.after == {"name": "gateway", "memory": None}


def test_rollback_destroys_created_restarts_stopped_and_stops_started() -> None:
    checkpoint = seed_host()
    checkpoint["containers"][0]["running"] = False  # gateway was stopped
    checkpoint["containers"].append(host("byhand", None, owned=False))
    now = seed_host()  # the failed apply started gateway, stopped warp, created extra
    now["containers"][1]["running"] = False
    now["containers"].append(host("extra", "103"))
    now["containers"].append(host("byhand", None, owned=False))
    actions = diff_lxc(now, checkpoint, exhaustive=True)
    assert kinds(actions) == [
        ("delete", "container/extra"),
        ("modify", "container/gateway"),
        ("modify", "container/warp"),
    ]
    assert actions[1].after == {"name": "gateway", "running": False}
    assert actions[2].after == {"name": "warp", "running": True}
    assert diff_lxc(checkpoint, checkpoint, exhaustive=True) == []


def test_rollback_recreates_an_owned_container_it_destroyed_but_never_a_foreign_one() -> None:
    checkpoint = seed_host()
    checkpoint["containers"].append(host("byhand", None, owned=False))
    now = {"containers": seed_host()["containers"][:2]}
    actions = diff_lxc(now, checkpoint, exhaustive=True)
    assert kinds(actions) == [("create", "container/xray-client")]
    assert actions[0].after["hwaddr"] == "02:00:00:00:00:66"


def test_stale_ports_are_removed_first() -> None:
    current = seed_host()
    current["stale_ports"] = [{"name": "vi150", "bridge": "mesh", "container": "gone"}]
    desired = {"containers": [{"id": "200", "name": "new"}]}
    assert kinds(diff_lxc(current, desired)) == [
        ("delete", "port/vi150"),
        ("create", "container/new"),
    ]
    assert kinds(diff_lxc(current, seed_host(), exhaustive=True)) == [("delete", "port/vi150")]


def test_a_creation_cut_short_is_planned_as_a_create_that_finishes_it() -> None:
    current = seed_host()
    cut = host("gateway", None, running=False, veth=None, bridge=None, incomplete=True)
    current["containers"][0] = cut
    actions = diff_lxc(current, SEED)
    assert kinds(actions) == [("create", "container/gateway")]
    assert actions[0].before == cut and actions[0].after["veth"] == "vi100"
    gone = {"containers": [{"id": "100", "name": "gateway", "state": "absent"}]}
    assert kinds(diff_lxc(current, gone)) == [("delete", "container/gateway")]
    assert diff_lxc(current, {"containers": SEED["containers"][1:]}) == []
    # rolled back after finishing it: a half-made container holds nothing worth restoring
    finished = seed_host()
    (undo,) = diff_lxc(finished, current, exhaustive=True)
    assert (undo.kind, undo.resource) == (ActionKind.DELETE, "container/gateway")
    assert diff_lxc(current, current, exhaustive=True) == []


def test_an_unreadable_container_is_refused_only_when_the_file_names_it() -> None:
    current = seed_host()
    current["containers"].append(host("odd", None, owned=False, unreadable="config: bad"))
    assert diff_lxc(current, SEED) == []
    for want in ({"id": "7", "name": "odd", "running": False}, {"id": "7", "name": "odd"}):
        with pytest.raises(Refused, match=r"container/odd: its config cannot be read"):
            diff_lxc(current, {"containers": [want]})
    assert diff_lxc(current, current, exhaustive=True) == []


def test_rollback_never_claims_a_container_that_appeared_is_gone() -> None:
    """A foreign container that appeared during the apply cannot be removed by op-dbus, so the
    restore plans its deletion (which apply refuses): the rollback then reports it left."""
    checkpoint = seed_host()
    now = seed_host()
    now["containers"].append(host("--busybox-path", None, running=False, owned=False))
    (action,) = diff_lxc(now, checkpoint, exhaustive=True)
    assert (action.kind, action.resource) == (ActionKind.DELETE, "container/--busybox-path")
    assert action.before["owned"] is False


def test_vlan_trunks_and_mtu_change_and_a_rollback_clears_them() -> None:
    have = {"containers": [host("gateway", "100", vlan=None, trunks=[], mtu=None)]}
    want = {"containers": [{"id": "100", "name": "gateway", "vlan": 10, "trunks": [30, 20, 30]}]}
    (action,) = diff_lxc(have, want)
    assert action.after == {"name": "gateway", "vlan": 10, "trunks": [20, 30]}
    tagged = {"containers": [host("gateway", "100", vlan=10, trunks=[20, 30], mtu=1400)]}
    assert diff_lxc(tagged, want) == []
    (back,) = diff_lxc(tagged, have, exhaustive=True)
    assert back.after == {"name": "gateway", "vlan": None, "trunks": [], "mtu": None}
    assert diff_lxc(tagged, {"containers": [{"id": "100", "name": "gateway"}]}) == []


def nic(veth: str, bridge: str, **extra: Any) -> dict[str, Any]:
    return {"veth": veth, "bridge": bridge, "hwaddr": None, "vlan": None, "trunks": [],
            "mtu": None, "ipv4": {"address": []}, **extra}  # fmt: skip


def test_nics_compare_by_place_keep_what_a_nic_leaves_out_and_roll_back() -> None:
    two = [nic("vi100", "mesh", hwaddr="02:00:00:00:00:64"), nic("vi100b", "lan")]
    have = {"containers": [host("gateway", "100", nics=two)]}
    same = [{"veth": "vi100", "bridge": "mesh"}, {"veth": "vi100b", "bridge": "lan", "trunks": []}]
    assert diff_lxc(have, {"containers": [{"id": "100", "name": "gateway", "nics": same}]}) == []
    tagged = [{"veth": "vi100"}, {"veth": "vi100b", "vlan": 7}]
    (action,) = diff_lxc(have, {"containers": [{"id": "100", "name": "gateway", "nics": tagged}]})
    assert action.after["nics"][0]["hwaddr"] == "02:00:00:00:00:64"  # kept
    assert action.after["nics"][1] == {**two[1], "vlan": 7}
    one = {"containers": [host("gateway", "100")]}  # a checkpoint from before nics
    (back,) = diff_lxc(have, one, exhaustive=True)
    assert back.after["nics"] == []


def test_a_new_container_with_nics_gets_a_mac_per_nic() -> None:
    want = {
        "id": "100",
        "name": "gateway",
        "nics": [{"veth": "a0", "bridge": "mesh"}, {"veth": "a1"}],
    }
    (action,) = diff_lxc({"containers": []}, {"containers": [want]})
    assert [n["hwaddr"] for n in action.after["nics"]] == ["02:00:00:00:00:64", "02:01:00:00:00:64"]
    assert (action.after["veth"], action.after["bridge"]) == ("a0", "mesh")
