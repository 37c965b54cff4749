"""The net plugin's OVSDB side: one consistent read, and one guarded transaction per apply.

The read is a single transaction of selects, so bridges, ports and interfaces are one
snapshot. The write turns the plan's actions into operations against a fresh snapshot and
guards every row it relies on with a `wait` (timeout 0): if anyone changed such a row since
the read, the server refuses the whole transaction and the caller re-reads and rebuilds.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from op_dbus.native.ovsdb import OvsdbClient, OvsdbError
from op_dbus.native.vswitch import (
    BRIDGE_COLUMNS,
    EMPTY_SET,
    OWNER,
    OWNER_KEY,
    PORT_COLUMNS,
    VSWITCH_DB,
    Replica,
    from_map,
    mutate,
    next_cfg_ops,
    optional,
    ovsdb_set,
    owned,
    select,
    to_map,
    uuids,
    wait_op,
    where_uuid,
)
from op_dbus.plugins.base import Action, ActionKind

IFACE_COLUMNS = ["name", "type", "options", "ofport", "error", "mtu", "mtu_request"]
TUNNEL_TYPES = ("vxlan", "geneve", "gre")
TUNNEL_NUMBERS = ("key", "dst_port")
"""Tunnel options the state file spells as integers (OVSDB keeps every option as text)."""


@dataclass
class Snapshot:
    """Rows of one read. Bridges by name (only those hanging off the root row)."""

    root: dict[str, Any]
    bridges: dict[str, dict[str, Any]] = field(default_factory=dict)
    ports: dict[str, dict[str, Any]] = field(default_factory=dict)  # by uuid
    interfaces: dict[str, dict[str, Any]] = field(default_factory=dict)  # by uuid
    kernel_datapath: bool = True  # vswitchd offers `system` even without the kernel module
    _port_index: dict[str, tuple[dict, dict]] | None = field(default=None, repr=False)

    @property
    def datapath_types(self) -> list[str]:
        return sorted(ovsdb_set(self.root.get("datapath_types", EMPTY_SET)))

    def default_datapath(self) -> str:
        """`system` when offered and usable, else `netdev`; "" (OVS's default) if unknown."""
        types = self.datapath_types
        if "system" in types and self.kernel_datapath:
            return "system"
        return "netdev" if "netdev" in types else ""

    def ports_of(self, bridge: dict[str, Any]) -> list[dict[str, Any]]:
        return [self.ports[u] for u in uuids(bridge["ports"]) if u in self.ports]

    def members(self, bridge: dict[str, Any]) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """The bridge's own port (named like the bridge; None if missing) and its other ports."""
        own, others = None, []
        for port in self.ports_of(bridge):
            if port["name"] == bridge["name"]:
                own = port
            else:
                others.append(port)
        return own, others

    def interfaces_of(self, port: dict[str, Any]) -> list[dict[str, Any]]:
        """The port's interfaces by name (several for a bond)."""
        found = [self.interfaces[u] for u in uuids(port["interfaces"]) if u in self.interfaces]
        return sorted(found, key=lambda row: row["name"])

    def interface_of(self, port: dict[str, Any]) -> dict[str, Any] | None:
        found = self.interfaces_of(port)
        return found[0] if found else None

    def find_port(self, name: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """(bridge row, port row) of the port called `name`, on any bridge."""
        if self._port_index is None:
            self._port_index = {
                port["name"]: (bridge, port)
                for bridge in self.bridges.values()
                for port in self.ports_of(bridge)
            }
        return self._port_index.get(name)


async def read_snapshot(client: OvsdbClient, *, kernel_datapath: bool = True) -> Snapshot:
    """Root row, bridges, ports and interfaces, read in one transaction."""
    root, bridges, ports, ifaces = await client.transact(
        VSWITCH_DB,
        select(VSWITCH_DB, "bridges", "datapath_types"),
        select("Bridge", *BRIDGE_COLUMNS),
        select("Port", *PORT_COLUMNS),
        select("Interface", *IFACE_COLUMNS),
    )
    if not root["rows"]:
        raise OvsdbError("the Open_vSwitch table has no row (run `ovs-vsctl init`)")
    snap = Snapshot(root["rows"][0], kernel_datapath=kernel_datapath)
    attached = set(uuids(snap.root["bridges"]))
    for row in bridges["rows"]:
        if row["_uuid"][1] in attached:
            snap.bridges[row["name"]] = row
    snap.ports = {row["_uuid"][1]: row for row in ports["rows"]}
    snap.interfaces = {row["_uuid"][1]: row for row in ifaces["rows"]}
    return snap


def replica_snapshot(replica: Replica, *, kernel_datapath: bool = True) -> Snapshot:
    """The same Snapshot from the daemon's replica (native/vswitch.py), without a read."""
    root = replica.root()
    if root is None:
        raise OvsdbError("the Open_vSwitch table has no row (run `ovs-vsctl init`)")
    snap = Snapshot(root, kernel_datapath=kernel_datapath)
    attached = set(uuids(root["bridges"]))
    for uuid, row in replica.tables["Bridge"].items():
        if uuid in attached:
            snap.bridges[row["name"]] = row
    snap.ports = dict(replica.tables["Port"])
    snap.interfaces = dict(replica.tables["Interface"])
    return snap


def port_entry(snap: Snapshot, bridge: dict[str, Any], port: dict[str, Any]) -> dict[str, Any]:
    """A port as the state file spells it, plus read-only facts (owned, ofport, error)."""
    ifaces = snap.interfaces_of(port)
    iface = ifaces[0] if ifaces else {}
    entry: dict[str, Any] = {
        "name": port["name"],
        **_kind(port, ifaces),
        "bridge": bridge["name"],
        "external_ids": to_map(port["external_ids"]),
        "owned": owned(port),
    }
    if (tag := optional(port["tag"])) is not None:
        entry["vlan"] = tag
    if trunks := sorted(ovsdb_set(port.get("trunks", EMPTY_SET))):
        entry["trunks"] = trunks
    if (mode := optional(port.get("vlan_mode", EMPTY_SET))) is not None:
        entry["vlan_mode"] = mode
    entry.update(realised(iface))
    return entry


def _kind(port: dict[str, Any], ifaces: list[dict[str, Any]]) -> dict[str, Any]:
    """The port's `type` and what that type carries (peer, tunnel, bond), from its rows."""
    if len(ifaces) > 1:
        bond: dict[str, Any] = {"interfaces": [i["name"] for i in ifaces]}
        for key, column in (("mode", "bond_mode"), ("lacp", "lacp")):
            if (value := optional(port.get(column, EMPTY_SET))) is not None:
                bond[key] = value
        return {"type": "ovs-bond", "bond": bond}
    kind = ifaces[0].get("type", "") if ifaces else ""
    options = to_map(ifaces[0].get("options")) if ifaces else {}
    if kind == "internal":
        return {"type": "ovs-internal"}
    if kind == "patch":
        return {"type": "ovs-patch", "peer": options.get("peer")}
    if kind in TUNNEL_TYPES:
        tunnel: dict[str, Any] = {"type": kind, **options}
        for key in TUNNEL_NUMBERS:
            if str(tunnel.get(key, "")).isdigit():
                tunnel[key] = int(tunnel[key])
        return {"type": "ovs-tunnel", "tunnel": tunnel}
    return {"type": "ovs-port"}


def interface_kind(after: dict[str, Any]) -> dict[str, Any]:
    """The Interface columns (`type`, `options`) an ovs-internal, patch or tunnel port needs."""
    if after.get("type") == "ovs-internal":
        return {"type": "internal"}
    if after.get("peer") is not None:
        return {"type": "patch", "options": from_map({"peer": after["peer"]})}
    if (tunnel := after.get("tunnel")) is not None:
        options = {k: str(v) for k, v in tunnel.items() if k != "type" and v is not None}
        return {"type": tunnel["type"], "options": from_map(options)}
    return {}


def port_columns(after: dict[str, Any]) -> dict[str, Any]:
    """The Port columns of the VLAN and bond fields `after` has (None clears one)."""
    row: dict[str, Any] = {}
    if "vlan" in after:
        row["tag"] = EMPTY_SET if after["vlan"] is None else after["vlan"]
    if "trunks" in after:
        row["trunks"] = ["set", sorted(set(after["trunks"] or []))]
    if "vlan_mode" in after:
        row["vlan_mode"] = after["vlan_mode"] or EMPTY_SET
    if after.get("bond") is not None:  # whole: a diff fills in the keys a file left out
        for key, column in (("mode", "bond_mode"), ("lacp", "lacp")):
            row[column] = after["bond"].get(key) or EMPTY_SET
    return row


def realised(iface: dict[str, Any]) -> dict[str, Any]:
    """What vswitchd reports for an interface: ofport, error, mtu (when it has said)."""
    facts: dict[str, Any] = {}
    if (ofport := optional(iface.get("ofport", EMPTY_SET))) is not None:
        facts["ofport"] = ofport
    if (error := optional(iface.get("error", EMPTY_SET))) is not None:
        facts["error"] = error
    mtu = optional(iface.get("mtu", EMPTY_SET)) or optional(iface.get("mtu_request", EMPTY_SET))
    if mtu is not None:
        facts["mtu"] = mtu
    return facts


def bridge_entry(snap: Snapshot, bridge: dict[str, Any]) -> dict[str, Any]:
    """A bridge as the state file spells it (ports without the bridge's own), plus facts."""
    own, ports = snap.members(bridge)
    entry: dict[str, Any] = {
        "name": bridge["name"],
        "type": "ovs-bridge",
        "ports": sorted(p["name"] for p in ports),
        "datapath": bridge["datapath_type"],
        "external_ids": to_map(bridge["external_ids"]),
        "stp": bridge["stp_enable"],
        "owned": owned(bridge),
    }
    if (fail_mode := optional(bridge["fail_mode"])) is not None:
        entry["fail_mode"] = fail_mode
    if own is not None:
        entry.update(realised(snap.interface_of(own) or {}))
    return entry


class TransactionBuilder:
    """Operations for a list of net actions against one snapshot, with `wait` guards.

    `action_of[i]` is the action operation `i` serves, so a failing operation names the
    action the user sees. Netlink (`ipv4/`) actions produce no operations.
    """

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap
        self.ops: list[dict[str, Any]] = []
        self.action_of: list[Action] = []
        self._names = 0
        self._released: set[str] = set()  # names of ports this transaction takes away

    def build(self, actions: Iterable[Action]) -> list[dict[str, Any]]:
        actions = list(actions)
        new_bridges = {
            a.after["name"]
            for a in actions
            if a.kind == ActionKind.CREATE and a.resource.startswith("bridge/")
        }
        new_ports: dict[str, list[Action]] = {}
        for action in actions:
            kind, resource = action.kind, action.resource
            if resource.startswith("bridge/"):
                if kind == ActionKind.CREATE:
                    continue  # after the loop, with its new ports
                (self._delete_bridge if kind == ActionKind.DELETE else self._modify_bridge)(action)
            elif resource.startswith("port/"):
                if kind == ActionKind.DELETE:
                    self._delete_port(action)
                elif kind == ActionKind.MODIFY:
                    self._modify_port(action)
                elif action.after["bridge"] in new_bridges:
                    new_ports.setdefault(action.after["bridge"], []).append(action)
                else:
                    self._add_port_to_existing(action)
        for action in actions:
            if action.kind == ActionKind.CREATE and action.resource.startswith("bridge/"):
                self._create_bridge(action, new_ports.get(action.after["name"], []))
        if self.ops:
            self._emit(actions[0], {"op": "comment", "comment": "op-dbus apply"})
        return self.ops

    def ask_vswitchd(self, action: Action) -> None:
        """End the transaction with the `next_cfg` increment and read vswitchd answers to;
        the read is the last result."""
        for op in next_cfg_ops():
            self._emit(action, op)

    # --- helpers --------------------------------------------------------------------------
    def _emit(self, action: Action, op: dict[str, Any]) -> None:
        self.ops.append(op)
        self.action_of.append(action)

    def _name(self, prefix: str) -> str:
        self._names += 1
        return f"{prefix}{self._names}"

    def _guard(self, action: Action, table: str, row: dict[str, Any], columns: list[str]) -> None:
        rows = [{column: row[column] for column in columns}]
        self._emit(action, wait_op(table, where_uuid(row["_uuid"][1]), rows, columns))

    def _absent(self, action: Action, table: str, name: str) -> None:
        self._emit(action, wait_op(table, [["name", "==", name]], [], ["name"]))

    def _bridge(self, action: Action, name: str) -> dict[str, Any]:
        row = self.snap.bridges.get(name)
        if row is None:
            raise ConflictError(action, f"bridge {name} no longer exists")
        return row

    @staticmethod
    def _external_ids(current: dict[str, str], after: dict[str, Any]) -> dict[str, str]:
        merged = {**current, **after.get("external_ids", {})}
        for key in after.get("external_ids_remove", []):
            merged.pop(key, None)
        return merged

    def _owner_ids(self, after: dict[str, Any]) -> dict[str, str]:
        ids = dict(after.get("external_ids") or {})
        if after.get("owned", True):
            ids.setdefault(OWNER_KEY, OWNER)
        return ids

    def _new_port(self, action: Action, after: dict[str, Any]) -> str:
        """Insert an Interface and a Port for `after`; return the Port's uuid-name.

        A name an earlier action of this transaction releases (a port moving to another bridge,
        or kept by a renamed bridge) is reused: that delete's guard pins the old row, which
        OVSDB drops at commit, so it is not checked for here (within the transaction it still
        exists)."""
        name = after["name"]
        if name not in self._released:
            if (found := self.snap.find_port(name)) is not None:
                raise ConflictError(action, f"port {name} is already on bridge {found[0]['name']}")
            self._absent(action, "Port", name)
        members = (after.get("bond") or {}).get("interfaces") or [name]
        ifaces = [self._new_interface(action, after, member) for member in members]
        port_row: dict[str, Any] = {
            "name": name,
            "interfaces": ["set", [["named-uuid", i] for i in ifaces]],
            "external_ids": from_map(self._owner_ids(after)),
            **port_columns({k: v for k, v in after.items() if v is not None}),
        }
        port = self._name("p")
        self._emit(action, {"op": "insert", "table": "Port", "row": port_row, "uuid-name": port})
        return port

    def _new_interface(self, action: Action, after: dict[str, Any], name: str) -> str:
        """Insert the Interface `name` of the port `after`; return its uuid-name."""
        iface = self._name("i")
        row: dict[str, Any] = {
            "name": name,
            "external_ids": from_map(self._owner_ids(after)),
            **interface_kind(after),
        }
        if after.get("mtu") is not None:
            row["mtu_request"] = after["mtu"]
        self._emit(action, {"op": "insert", "table": "Interface", "row": row, "uuid-name": iface})
        return iface

    # --- bridges --------------------------------------------------------------------------
    def _create_bridge(self, action: Action, ports: list[Action]) -> None:
        after = action.after
        name = after["name"]
        if name in self.snap.bridges:
            raise ConflictError(action, f"bridge {name} was created by someone else meanwhile")
        self._absent(action, "Bridge", name)
        own_port = {"name": name, "type": "ovs-internal", "owned": after.get("owned", True)}
        own = self._new_port(action, {**own_port, "mtu": after.get("mtu")})
        members = [own, *(self._new_port(p, p.after) for p in ports)]
        row: dict[str, Any] = {
            "name": name,
            "ports": ["set", [["named-uuid", m] for m in members]],
            "external_ids": from_map(self._owner_ids(after)),
            "datapath_type": after.get("datapath") or self.snap.default_datapath(),
        }
        if after.get("stp") is not None:
            row["stp_enable"] = after["stp"]
        if after.get("fail_mode") is not None:
            row["fail_mode"] = after["fail_mode"]
        bridge = self._name("b")
        self._emit(action, {"op": "insert", "table": "Bridge", "row": row, "uuid-name": bridge})
        self._emit(action, mutate(VSWITCH_DB, [], "bridges", "insert", [["named-uuid", bridge]]))

    def _modify_bridge(self, action: Action) -> None:
        after = action.after
        row = self._bridge(action, after["name"])
        update: dict[str, Any] = {}
        if "datapath" in after:
            update["datapath_type"] = after["datapath"] or self.snap.default_datapath()
        if "stp" in after:
            update["stp_enable"] = bool(after["stp"])
        if "fail_mode" in after:
            update["fail_mode"] = after["fail_mode"] if after["fail_mode"] else EMPTY_SET
        if "external_ids" in after or "external_ids_remove" in after:
            ids = self._external_ids(to_map(row["external_ids"]), after)
            update["external_ids"] = from_map(ids)
        if update:
            columns = sorted({"name", *update})
            self._guard(action, "Bridge", row, columns)
            where = where_uuid(row["_uuid"][1])
            self._emit(action, {"op": "update", "table": "Bridge", "where": where, "row": update})
        if after.get("mtu") is not None:
            own, _ = self.snap.members(row)
            iface = self.snap.interface_of(own) if own else None
            if iface is None:
                raise ConflictError(action, f"bridge {row['name']} has no interface of its own")
            self._set_mtu(action, iface, after["mtu"])

    def _set_mtu(self, action: Action, iface: dict[str, Any], mtu: int) -> None:
        self._guard(action, "Interface", iface, ["name", "mtu_request"])
        where = where_uuid(iface["_uuid"][1])
        self._emit(
            action,
            {"op": "update", "table": "Interface", "where": where, "row": {"mtu_request": mtu}},
        )

    def _delete_bridge(self, action: Action) -> None:
        row = self._bridge(action, action.before["name"])
        if not owned(row):
            raise ConflictError(action, f"bridge {row['name']} is not owned by op-dbus")
        self._guard(action, "Bridge", row, ["name", "external_ids", "ports"])
        self._released.update(port["name"] for port in self.snap.ports_of(row))
        self._emit(action, mutate(VSWITCH_DB, [], "bridges", "delete", [row["_uuid"]]))

    # --- ports ----------------------------------------------------------------------------
    def _port_on(self, action: Action, bridge: str, name: str) -> dict[str, Any]:
        found = self.snap.find_port(name)
        if found is None or found[0]["name"] != bridge:
            raise ConflictError(action, f"port {name} is no longer on bridge {bridge}")
        return found[1]

    def _add_port_to_existing(self, action: Action) -> None:
        bridge = self._bridge(action, action.after["bridge"])
        port = self._new_port(action, action.after)
        self._guard(action, "Bridge", bridge, ["name"])
        where = where_uuid(bridge["_uuid"][1])
        self._emit(action, mutate("Bridge", where, "ports", "insert", [["named-uuid", port]]))

    def _delete_port(self, action: Action) -> None:
        bridge = self._bridge(action, action.before["bridge"])
        port = self._port_on(action, bridge["name"], action.before["name"])
        if not owned(port):
            raise ConflictError(action, f"port {port['name']} is not owned by op-dbus")
        self._guard(action, "Port", port, ["name", "external_ids", "interfaces"])
        self._released.add(port["name"])
        where = where_uuid(bridge["_uuid"][1])
        self._emit(action, mutate("Bridge", where, "ports", "delete", [port["_uuid"]]))

    def _modify_port(self, action: Action) -> None:
        after = action.after
        port = self._port_on(action, after["bridge"], after["name"])
        update = port_columns(after)
        if "bond" in after:
            update["interfaces"] = self._bond_members(action, port, after)
        if "external_ids" in after or "external_ids_remove" in after:
            ids = self._external_ids(to_map(port["external_ids"]), after)
            update["external_ids"] = from_map(ids)
        if update:
            self._guard(action, "Port", port, sorted({"name", *update}))
            where = where_uuid(port["_uuid"][1])
            self._emit(action, {"op": "update", "table": "Port", "where": where, "row": update})
        ifaces = self.snap.interfaces_of(port)
        if not ifaces and (after.get("mtu") is not None or "peer" in after or "tunnel" in after):
            raise ConflictError(action, f"port {port['name']} has no interface")
        if after.get("mtu") is not None:
            for iface in ifaces:
                self._set_mtu(action, iface, after["mtu"])
        if "peer" in after or "tunnel" in after:
            self._set_kind(action, ifaces[0], interface_kind(after))

    def _set_kind(self, action: Action, iface: dict[str, Any], kind: dict[str, Any]) -> None:
        """A patch's peer or a tunnel's endpoint: the Interface's type and all its options."""
        row = {"type": "", "options": from_map({}), **kind}
        self._guard(action, "Interface", iface, ["name", "type", "options"])
        where = where_uuid(iface["_uuid"][1])
        self._emit(action, {"op": "update", "table": "Interface", "where": where, "row": row})

    def _bond_members(self, action: Action, port: dict[str, Any], after: dict[str, Any]) -> Any:
        """The bond's new `interfaces` set: the rows it keeps, and new ones for added names."""
        have = {iface["name"]: iface for iface in self.snap.interfaces_of(port)}
        wanted = (after.get("bond") or {}).get("interfaces") or sorted(have)
        refs = [
            have[name]["_uuid"]
            if name in have
            else [
                "named-uuid",
                self._new_interface(action, {"owned": owned(port), "mtu": after.get("mtu")}, name),
            ]
            for name in wanted
        ]
        return ["set", refs]


class ConflictError(Exception):
    """The snapshot does not allow an action (someone else changed the host since the plan)."""

    def __init__(self, action: Action, reason: str) -> None:
        super().__init__(reason)
        self.action = action
        self.reason = reason
