"""The net plugin's diff and transaction building: pure logic, no OVS."""

from __future__ import annotations

import asyncio
import copy
import json
from pathlib import Path
from typing import Any

import pytest

from op_dbus.errors import Refused
from op_dbus.native.ovsdb import OvsdbError
from op_dbus.native.vswitch import OWNER_KEY, ovsdb_set
from op_dbus.plugins.base import Action, ActionKind
from op_dbus.plugins.net.diff import diff_net
from op_dbus.plugins.net.ovs import (
    ConflictError,
    Snapshot,
    TransactionBuilder,
    read_snapshot,
)
from op_dbus.plugins.net.plugin import _picks_datapath, net_mismatches

SEED = json.loads((Path(__file__).parents[2] / "examples" / "full-mode.json").read_text())["net"]
"""The seed's net section, exactly as examples/full-mode.json has it."""

OWNED = {OWNER_KEY: "op-dbus"}


def bridge(name: str, ports: list[str], *, owned: bool = True, **extra: object) -> dict:
    entry = {
        "name": name,
        "type": "ovs-bridge",
        "ports": ports,
        "datapath": "netdev",
        "external_ids": dict(OWNED) if owned else {},
        "stp": False,
        "owned": owned,
    }
    return {**entry, **extra}


def port(name: str, on: str, *, owned: bool = True, **extra: object) -> dict:
    entry = {
        "name": name,
        "type": "ovs-port",
        "bridge": on,
        "external_ids": dict(OWNED) if owned else {},
        "owned": owned,
    }
    return {**entry, **extra}


def ipv4(*addresses: str, gateway: str | None = None, enabled: bool = True) -> dict:
    found = [{"ip": a.split("/")[0], "prefix": int(a.split("/")[1])} for a in addresses]
    result = {"enabled": enabled, "dhcp": False, "address": found}
    return {**result, "gateway": gateway} if gateway else result


def applied_seed(**ovsbr0: object) -> dict:
    """What query returns once the seed is applied."""
    return {
        "interfaces": [
            bridge("mesh", [], ipv4=ipv4("10.0.0.1/24")),
            bridge(
                "ovsbr0",
                ["eth0"],
                ipv4=ipv4("192.168.1.10/24", gateway="192.168.1.1"),
                **ovsbr0,
            ),
            port("eth0", "ovsbr0"),
        ]
    }


def kinds(actions: list[Action]) -> list[tuple[str, str]]:
    return [(str(a.kind), a.resource) for a in actions]


def test_seed_on_an_empty_host_creates_bridges_port_then_addresses() -> None:
    actions = diff_net({"interfaces": []}, SEED)
    assert kinds(actions) == [
        ("create", "bridge/ovsbr0"),
        ("create", "bridge/mesh"),
        ("create", "port/eth0"),
        ("modify", "ipv4/ovsbr0"),
        ("modify", "ipv4/mesh"),
    ]
    assert actions[3].after["gateway"] == "192.168.1.1"
    assert "gateway" not in actions[4].after  # mesh declares none: left alone


def test_applied_seed_is_up_to_date() -> None:
    assert diff_net(applied_seed(), SEED) == []


def test_bridges_the_file_does_not_name_stay_and_prune_deletes_only_owned_ones() -> None:
    current = applied_seed()
    current["interfaces"] += [bridge("foreign0", []), bridge("old", [])]
    current["interfaces"][-2]["owned"] = False
    assert diff_net(current, SEED) == []  # a partial file deletes nothing
    assert kinds(diff_net(current, SEED, prune=True)) == [("delete", "bridge/old")]


def test_ports_a_bridge_does_not_list_stay_and_prune_deletes_only_owned_ones() -> None:
    current = applied_seed()
    current["interfaces"][0]["ports"] = ["veth-a", "veth-b"]
    current["interfaces"] += [port("veth-a", "mesh"), port("veth-b", "mesh", owned=False)]
    assert diff_net(current, SEED) == []
    assert kinds(diff_net(current, SEED, prune=True)) == [("delete", "port/veth-a")]


def test_absent_removes_an_owned_bridge_port_or_address_and_refuses_a_foreign_one() -> None:
    current = applied_seed()
    current["interfaces"][0]["ports"] = ["veth-a"]
    current["interfaces"] += [port("veth-a", "mesh"), bridge("foreign0", [])]
    current["interfaces"][-1]["owned"] = False
    desired = {
        "interfaces": [
            {"name": "veth-a", "type": "ovs-port", "state": "absent"},
            {"name": "gone0", "type": "ovs-bridge", "state": "absent"},  # not there: nothing
            {
                "name": "ovsbr0",
                "type": "ovs-bridge",
                "ipv4": {"address": [{"ip": "192.168.1.10", "prefix": 24, "state": "absent"}]},
            },
        ]
    }
    actions = diff_net(current, desired)
    assert kinds(actions) == [("delete", "port/veth-a"), ("modify", "ipv4/ovsbr0")]
    assert actions[1].after == {"name": "ovsbr0", "address": []}
    desired["interfaces"].append({"name": "mesh", "type": "ovs-bridge", "state": "absent"})
    assert kinds(diff_net(current, desired))[:1] == [("delete", "bridge/mesh")]
    foreign = {"interfaces": [{"name": "foreign0", "type": "ovs-bridge", "state": "absent"}]}
    with pytest.raises(Refused, match="did not create it"):
        diff_net(current, foreign)


def test_listed_addresses_are_added_and_prune_makes_the_list_whole() -> None:
    current = applied_seed()
    current["interfaces"][1]["ipv4"] = ipv4("192.168.1.99/24", gateway="192.168.1.1")
    (added,) = diff_net(current, SEED)
    assert added.after["address"] == [
        {"ip": "192.168.1.99", "prefix": 24},
        {"ip": "192.168.1.10", "prefix": 24},
    ]
    (replaced,) = diff_net(current, SEED, prune=True)
    assert replaced.after["address"] == [{"ip": "192.168.1.10", "prefix": 24}]


def test_bridge_without_ports_key_keeps_its_ports() -> None:
    current = applied_seed()
    current["interfaces"][0]["ports"] = ["veth-a"]
    current["interfaces"].append(port("veth-a", "mesh"))
    desired = copy.deepcopy(SEED)
    del desired["interfaces"][1]["ports"]
    assert diff_net(current, desired) == []


def test_drift_in_addresses_and_gateway_is_repaired_exactly() -> None:
    current = applied_seed()
    current["interfaces"][1]["ipv4"] = ipv4("192.168.1.99/24")
    (action,) = diff_net(current, SEED, prune=True)  # the daemon's state file: authoritative
    assert action.resource == "ipv4/ovsbr0"
    assert action.after == {
        "name": "ovsbr0",
        "address": [{"ip": "192.168.1.10", "prefix": 24}],
        "gateway": "192.168.1.1",
    }
    assert action.before == {
        "address": [{"ip": "192.168.1.99", "prefix": 24}],
        "gateway": None,
    }


def test_external_ids_are_merged_not_replaced() -> None:
    desired = copy.deepcopy(SEED)
    desired["interfaces"][1]["external_ids"] = {"role": "mesh"}
    current = applied_seed()
    (action,) = diff_net(current, desired)
    assert action.after == {"name": "mesh", "external_ids": {"role": "mesh"}}
    current["interfaces"][0]["external_ids"]["role"] = "mesh"
    assert diff_net(current, desired) == []


def test_dhcp_true_is_refused_naming_the_path() -> None:
    desired = copy.deepcopy(SEED)
    desired["interfaces"][1]["ipv4"]["dhcp"] = True
    with pytest.raises(Refused, match=r"net\.interfaces\[1\]\.ipv4\.dhcp"):
        diff_net({"interfaces": []}, desired)


def test_port_on_a_foreign_bridge_is_not_moved() -> None:
    current = {"interfaces": [bridge("other", ["eth0"], owned=False), port("eth0", "other")]}
    current["interfaces"][1]["owned"] = False
    with pytest.raises(Refused, match="does not own"):
        diff_net(current, SEED)


def test_rollback_removes_owned_rows_and_restores_checkpoint_fields() -> None:
    checkpoint = {
        "interfaces": [
            bridge("foreign0", [], owned=False, fail_mode="secure"),
            bridge("keep", [], external_ids={**OWNED, "a": "1"}, ipv4=ipv4("10.1.0.1/24")),
        ]
    }
    now = applied_seed()
    now["interfaces"] += [
        bridge("foreign0", [], owned=False),
        bridge("keep", ["p1"], external_ids={**OWNED, "b": "2"}, ipv4=ipv4("10.1.0.2/24")),
        port("p1", "keep"),
    ]
    actions = diff_net(now, checkpoint, exhaustive=True)
    assert kinds(actions) == [
        ("delete", "port/p1"),
        ("delete", "bridge/mesh"),
        ("delete", "bridge/ovsbr0"),
        ("modify", "bridge/foreign0"),
        ("modify", "bridge/keep"),
        ("modify", "ipv4/keep"),
    ]
    assert actions[3].after == {"name": "foreign0", "fail_mode": "secure"}
    assert actions[4].after == {
        "name": "keep",
        "external_ids": {"a": "1"},
        "external_ids_remove": ["b"],
    }
    assert actions[5].after["address"] == [{"ip": "10.1.0.1", "prefix": 24}]


def test_rollback_recreates_a_deleted_bridge_with_its_addresses() -> None:
    checkpoint = {"interfaces": [bridge("keep", [], ipv4=ipv4("10.1.0.1/24"))]}
    actions = diff_net({"interfaces": []}, checkpoint, exhaustive=True)
    assert kinds(actions) == [("create", "bridge/keep"), ("modify", "ipv4/keep")]
    assert actions[1].after == {
        "name": "keep",
        "enabled": True,
        "address": [{"ip": "10.1.0.1", "prefix": 24}],
    }


def test_rollback_to_its_own_result_is_empty() -> None:
    now = applied_seed()
    assert diff_net(now, copy.deepcopy(now), exhaustive=True) == []


# --- the transaction built from actions -------------------------------------------------------


def snapshot(*bridges: tuple[str, bool]) -> Snapshot:
    """Bridges (name, owned), each with its own internal port and interface."""
    snap = Snapshot({"_uuid": ["uuid", "root"], "datapath_types": ["set", ["netdev", "system"]]})
    for name, is_owned in bridges:
        ids = ["map", [[OWNER_KEY, "op-dbus"]] if is_owned else []]
        snap.interfaces[f"i-{name}"] = {
            "_uuid": ["uuid", f"i-{name}"],
            "name": name,
            "type": "internal",
        }
        snap.ports[f"p-{name}"] = {
            "_uuid": ["uuid", f"p-{name}"],
            "name": name,
            "interfaces": ["uuid", f"i-{name}"],
            "tag": ["set", []],
            "external_ids": ids,
        }
        snap.bridges[name] = {
            "_uuid": ["uuid", f"b-{name}"],
            "name": name,
            "ports": ["uuid", f"p-{name}"],
            "datapath_type": "netdev",
            "external_ids": ids,
            "stp_enable": False,
            "fail_mode": ["set", []],
        }
    return snap


def add_port(snap: Snapshot, on: str, name: str) -> None:
    """An owned port `name` (with its interface) on bridge `on` of `snap`."""
    snap.interfaces[f"i-{name}"] = {"_uuid": ["uuid", f"i-{name}"], "name": name, "type": ""}
    snap.ports[f"p-{name}"] = {
        "_uuid": ["uuid", f"p-{name}"],
        "name": name,
        "interfaces": ["uuid", f"i-{name}"],
        "tag": ["set", []],
        "external_ids": ["map", [[OWNER_KEY, "op-dbus"]]],
    }
    bridge = snap.bridges[on]
    bridge["ports"] = ["set", [*ovsdb_set(bridge["ports"]), ["uuid", f"p-{name}"]]]


def ops_on(ops: list[dict[str, Any]], op: str, table: str) -> list[dict[str, Any]]:
    return [o for o in ops if o["op"] == op and o.get("table") == table]


def test_seed_becomes_one_transaction_guarded_and_owned() -> None:
    snap = snapshot()
    snap.kernel_datapath = False
    builder = TransactionBuilder(snap)
    ops = builder.build(diff_net({"interfaces": []}, SEED))
    waits = [op for op in ops if op["op"] == "wait"]
    assert {(w["table"], w["where"][0][2]) for w in waits} >= {
        ("Bridge", "ovsbr0"),
        ("Bridge", "mesh"),
        ("Port", "eth0"),
    }
    assert all(w["timeout"] == 0 and w["rows"] == [] for w in waits)
    bridges = [op["row"] for op in ops if op["op"] == "insert" and op["table"] == "Bridge"]
    assert [b["datapath_type"] for b in bridges] == ["netdev", "netdev"]  # no kernel module
    assert all(dict(b["external_ids"][1])[OWNER_KEY] == "op-dbus" for b in bridges)
    ovsbr0 = next(b for b in bridges if b["name"] == "ovsbr0")
    assert len(ovsbr0["ports"][1]) == 2  # its own port and eth0, in the same insert
    assert len(builder.action_of) == len(ops)


def test_system_datapath_is_preferred_when_usable() -> None:
    ops = TransactionBuilder(snapshot()).build(diff_net({"interfaces": []}, SEED))
    assert {
        op["row"]["datapath_type"] for op in ops if op.get("table") == "Bridge" and "row" in op
    } == {"system"}


def test_delete_is_guarded_by_the_row_as_read_and_refused_for_foreign_rows() -> None:
    snap = snapshot(("old", True), ("foreign0", False))
    delete = Action("net", ActionKind.DELETE, "bridge/old", before={"name": "old"})
    ops = TransactionBuilder(snap).build([delete])
    assert ops[0]["op"] == "wait" and ops[0]["rows"][0]["ports"] == ["uuid", "p-old"]
    assert ops[1]["mutations"] == [["bridges", "delete", ["set", [["uuid", "b-old"]]]]]
    foreign = Action("net", ActionKind.DELETE, "bridge/foreign0", before={"name": "foreign0"})
    with pytest.raises(ConflictError, match="not owned"):
        TransactionBuilder(snap).build([foreign])


def test_create_of_a_bridge_that_appeared_meanwhile_is_a_conflict() -> None:
    create = Action("net", ActionKind.CREATE, "bridge/mesh", after={"name": "mesh"})
    with pytest.raises(ConflictError, match="someone else"):
        TransactionBuilder(snapshot(("mesh", False))).build([create])


def test_a_port_moves_to_another_bridge_in_one_transaction() -> None:
    """The delete releases the name: the re-insert is neither a conflict nor guarded as absent
    (within the transaction the old row still exists; OVSDB drops it at commit)."""
    snap = snapshot(("a", True), ("b", True))
    add_port(snap, "a", "p1")
    current = {"interfaces": [bridge("a", ["p1"]), bridge("b", []), port("p1", "a")]}
    desired = {
        "interfaces": [
            {"name": "a", "type": "ovs-bridge", "ports": []},
            {"name": "b", "type": "ovs-bridge", "ports": ["p1"]},
        ]
    }
    actions = diff_net(current, desired)
    assert kinds(actions) == [("delete", "port/p1"), ("create", "port/p1")]

    ops = TransactionBuilder(snap).build(actions)

    (guard,) = ops_on(ops, "wait", "Port")
    assert guard["where"] == [["_uuid", "==", ["uuid", "p-p1"]]]  # the old row, as read
    off_a, onto_b = ops_on(ops, "mutate", "Bridge")
    assert off_a["mutations"] == [["ports", "delete", ["set", [["uuid", "p-p1"]]]]]
    assert onto_b["where"] == [["_uuid", "==", ["uuid", "b-b"]]]
    assert [o["row"]["name"] for o in ops_on(ops, "insert", "Port")] == ["p1"]


def test_a_renamed_bridge_takes_its_ports_along() -> None:
    snap = snapshot(("a", True))
    add_port(snap, "a", "p1")
    current = {"interfaces": [bridge("a", ["p1"]), port("p1", "a")]}
    desired = {"interfaces": [{"name": "b", "type": "ovs-bridge", "ports": ["p1"]}]}
    moved = [("delete", "port/p1"), ("create", "bridge/b"), ("create", "port/p1")]
    assert kinds(diff_net(current, desired)) == moved  # a partial file: `a` stays
    actions = diff_net(current, desired, prune=True)
    assert kinds(actions) == [("delete", "bridge/a"), ("create", "bridge/b"), ("create", "port/p1")]

    ops = TransactionBuilder(snap).build(actions)

    assert not any(o["op"] == "wait" and o["where"] == [["name", "==", "p1"]] for o in ops)
    assert [o["row"]["name"] for o in ops_on(ops, "insert", "Port")] == ["b", "p1"]
    (new_bridge,) = ops_on(ops, "insert", "Bridge")
    assert len(new_bridge["row"]["ports"][1]) == 2


def test_a_port_taken_by_someone_else_is_still_a_conflict() -> None:
    snap = snapshot(("a", False), ("b", True))
    add_port(snap, "a", "p1")
    create = Action("net", ActionKind.CREATE, "port/p1", after={"name": "p1", "bridge": "b"})
    with pytest.raises(ConflictError, match="already on bridge a"):
        TransactionBuilder(snap).build([create])


def test_the_kernel_datapath_is_checked_only_when_ovs_picks_the_datapath() -> None:
    def bridge_action(kind: ActionKind, **after: object) -> Action:
        return Action("net", kind, "bridge/br0", after={"name": "br0", **after})

    assert _picks_datapath([bridge_action(ActionKind.CREATE)])
    assert _picks_datapath([bridge_action(ActionKind.MODIFY, datapath="")])
    assert not _picks_datapath([bridge_action(ActionKind.CREATE, datapath="netdev")])
    assert not _picks_datapath([bridge_action(ActionKind.MODIFY, stp=True)])
    assert not _picks_datapath([Action("net", ActionKind.DELETE, "bridge/br0", before={})])


def test_an_uninitialised_database_is_an_ovsdb_error() -> None:
    """So the apply reports it as an ApplyError naming the action, not a crash."""

    class NoRootRow:
        async def transact(self, db: str, *ops: dict[str, Any]) -> list[dict[str, Any]]:
            return [{"rows": []} for _ in ops]

    with pytest.raises(OvsdbError, match="ovs-vsctl init"):
        asyncio.run(read_snapshot(NoRootRow()))  # type: ignore[arg-type]


def test_verify_reports_missing_unwanted_and_differing() -> None:
    current = applied_seed()
    current["interfaces"] = [e for e in current["interfaces"] if e["name"] != "mesh"]
    current["interfaces"].append(bridge("old", []))
    current["interfaces"][0]["ipv4"] = ipv4("192.168.1.99/24", gateway="192.168.1.1")
    found = {
        (m.resource, m.field, str(m.expected), str(m.actual)) for m in net_mismatches(current, SEED)
    }
    assert found == {  # `old`, which the file does not name, is no mismatch
        ("bridge/mesh", "present", "True", "False"),
        ("ipv4/mesh", "enabled", "True", "None"),
        ("ipv4/mesh", "address", "[{'ip': '10.0.0.1', 'prefix': 24}]", "None"),
        (
            "ipv4/ovsbr0",
            "address",
            "[{'ip': '192.168.1.99', 'prefix': 24}, {'ip': '192.168.1.10', 'prefix': 24}]",
            "[{'ip': '192.168.1.99', 'prefix': 24}]",
        ),
    }


def test_netlink_is_read_only_when_a_plan_can_touch_addresses() -> None:
    """A daemon repairing 1000 internal ports must not read 1000 links: nothing of an OVS
    internal port's addresses moves. ipv4, a system port (whose addresses move into its
    bridge) or a checkpoint's port_addresses need the read."""
    from op_dbus.endpoints import Endpoints
    from op_dbus.plugins.net.plugin import NetPlugin

    plugin = NetPlugin(Endpoints())
    internal = {
        "interfaces": [
            {"name": "br0", "type": "ovs-bridge", "ports": ["p0"]},
            {"name": "p0", "type": "ovs-internal", "bridge": "br0"},
            {"name": "p1", "type": "ovs-internal", "bridge": "br0"},
        ]
    }
    assert not plugin.reads_all(internal)
    system = {"interfaces": [{"name": "br0", "type": "ovs-bridge", "ports": ["eth0"]}]}
    assert plugin.reads_all(system)
    addressed = {
        "interfaces": [
            *internal["interfaces"],
            {"name": "p2", "type": "ovs-internal", "bridge": "br0", "ipv4": {"enabled": True}},
        ]
    }
    assert plugin.reads_all(addressed)
    assert plugin.reads_all({**internal, "port_addresses": {}})
    assert plugin.reads_all(None)
