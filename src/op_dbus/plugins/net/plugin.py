"""The net plugin: Open vSwitch bridges and ports over OVSDB, addresses and routes over netlink.

An apply makes all its OVS changes in one OVSDB transaction guarded by `wait` operations
(ovs.py); when someone else changed a guarded row meanwhile, it re-reads and rebuilds, a
bounded number of times. When an ovs-vswitchd serves the database, it then waits until
vswitchd has applied the transaction (`cur_cfg`, as ovs-vsctl does; docs/net.md, the wait
rule). Then each bridge's OpenFlow rules, one bundle per bridge (openflow.py). Then netlink
(ipv4.py, ipv6.py): links up, addresses, the default routes, static routes. All act in the
namespace op-dbus runs in, which must be the one ovs-vswitchd creates its devices in.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, ClassVar

from op_dbus.model.route_rules import ROUTED_TYPES
from op_dbus.native import netlink
from op_dbus.native.ofctl import OfctlError
from op_dbus.native.ovsdb import (
    OvsdbClient,
    OvsdbConnectionError,
    OvsdbError,
    OvsdbLink,
    OvsdbOpError,
)
from op_dbus.native.sockets import session_addresses
from op_dbus.native.vswitch import (
    VSWITCH_DB,
    Replica,
    is_wait_conflict,
    live_replica,
    to_map,
    vswitchd_connected,
    wait_for_cur_cfg,
)
from op_dbus.plugins.base import (
    Action,
    ActionKind,
    ApplyError,
    Availability,
    Mismatch,
    Plugin,
    Section,
    Steps,
    report,
)
from op_dbus.plugins.net import ipv6, migrate, openflow, routes
from op_dbus.plugins.net.danger import Lifelines, mark
from op_dbus.plugins.net.diff import diff_net, split
from op_dbus.plugins.net.ipv4 import apply_ipv4, ipv4_of
from op_dbus.plugins.net.ovs import (
    ConflictError,
    Snapshot,
    TransactionBuilder,
    bridge_entry,
    owned,
    port_entry,
    read_snapshot,
    replica_snapshot,
)

ATTEMPTS = 3
"""Transactions tried before giving up when others keep changing the rows we read."""
VSWITCHD_TIMEOUT = 30.0
VSWITCHD_TIMEOUT_PER_ACTION = 0.02
"""How long ovs-vswitchd may take to apply a transaction: 30 s plus 20 ms per OVS action
(1000 bridges with a port each: 70 s; it needs about 10 s when busy)."""


@dataclass
class NetPlugin(Plugin):
    name: ClassVar[str] = "net"
    _link: OvsdbLink = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._link = OvsdbLink(self.endpoints.ovsdb)

    async def _ovsdb(self) -> OvsdbClient:
        return await self._link.client()

    async def available(self) -> Availability:
        problem = await self._link.problem()
        return Availability(problem is None, problem or "")

    async def close(self) -> None:
        await self._link.close()

    async def query(self, scope: Section | None = None) -> Section:
        """Every bridge (foreign ones marked `owned: false`) and port, with ipv4 and ipv6 from
        netlink.

        Whatever the scope: an owned bridge the file no longer lists must be seen to go. Netlink
        is read only when the apply or its rollback can touch addresses or routes: the scope
        declares `ipv4`, `ipv6`, `routes` or system ports, or an owned row will be deleted (not
        named, or a port on another bridge: its device goes, addresses and all, and a rollback
        must bring them back). Otherwise it is skipped: a daemon's repair of 1000 internal ports
        plans from its OVSDB replica alone, without reading 1000 links."""
        snap = await self._snapshot()
        touched = self.reads_all(scope) or _drops_owned(snap, scope or {})
        net = await netlink.read_state() if touched else None
        section = entries_with_ipv4(snap, net, _port_names(scope))
        await self._add_flows(section, _flow_bridges(snap, scope))
        return section

    async def _add_flows(self, section: Section, bridges: list[str]) -> None:
        """Each of `bridges` gets `openflow`: op-dbus's flows on it, read from vswitchd."""
        if not bridges:
            return
        try:
            flows = await openflow.read_flows(self.endpoints.ovs_rundir, bridges)
        except OfctlError as exc:
            raise OvsdbError(f"cannot read OpenFlow rules: {exc}") from exc
        for entry in section["interfaces"]:
            if entry["name"] in flows and entry["type"] == "ovs-bridge":
                entry["openflow"] = flows[entry["name"]]

    def reads_all(self, scope: Section | None) -> bool:
        """Whether netlink is read: the scope declares `ipv4`, `ipv6`, `routes` or system ports
        (whose addresses move into their bridge, migrate.py), or is a checkpoint with addresses
        to restore. Internal, patch, tunnel and bond ports are OVS's devices: nothing moves off
        them."""
        if scope is None or "port_addresses" in scope:
            return True
        if any(
            entry.get(key) is not None
            for entry in scope.get("interfaces", [])
            for key in ("ipv4", "ipv6", "routes")
        ):
            return True
        return any(port.get("type") == "ovs-port" for port in split(scope)[1].values())

    async def _snapshot(self, *, kernel_datapath: bool = True, fresh: bool = False) -> Snapshot:
        """The daemon's replica when it keeps one (and `fresh` is not asked), else one read; a
        read is safe to repeat, so a connection lost under it is made again once (a loss the
        reader task has not noticed yet shows up only here)."""
        if not fresh and (replica := self._replica()) is not None:
            return replica_snapshot(replica, kernel_datapath=kernel_datapath)
        client = await self._ovsdb()
        try:
            return await read_snapshot(client, kernel_datapath=kernel_datapath)
        except OvsdbConnectionError:
            await client.reconnect(retries=5)
            return await read_snapshot(client, kernel_datapath=kernel_datapath)

    def _replica(self) -> Replica | None:
        """The replica of the daemon's OVSDB monitor, once it shows an ovs-vswitchd (which
        confirms each change through cur_cfg, so the replica is known to have caught up)."""
        replica = live_replica(self.endpoints.ovsdb)
        if replica is None or not (replica.root() or {}).get("datapath_types"):
            return None
        return replica

    def diff(
        self, current: Section, desired: Section, *, exhaustive: bool = False, prune: bool = False
    ) -> list[Action]:
        return diff_net(current, desired, exhaustive=exhaustive, prune=prune)

    async def assess(self, current: Section, actions: list[Action]) -> list[Action]:
        """Creates cut nothing; anything else is checked against the lifelines read now
        (default routes and addresses by netlink, live sessions from the socket tables)."""
        if all(a.kind == ActionKind.CREATE for a in actions):
            return actions
        net = await netlink.read_state()
        sessions = frozenset(await asyncio.to_thread(session_addresses))
        ipv6 = Lifelines(
            routes={r.ifname: r.gateway for r in net.default_routes6},
            addresses=net.addresses6,
            sessions=sessions,
            own_routes=frozenset(r.ifname for r in net.default_routes6 if r.owned),
        )
        lines = Lifelines(
            routes={r.ifname: r.gateway for r in net.default_routes},
            addresses=net.addresses,
            sessions=sessions,
            own_routes=frozenset(r.ifname for r in net.default_routes if r.owned),
            ipv6=ipv6,
        )
        return mark(current, actions, lines)

    def touches_connectivity(self, actions: list[Action]) -> bool:
        """Addresses and routes, and whatever the danger rules found carrying them."""
        return any(
            a.resource.startswith(("ipv4/", ipv6.RESOURCE, routes.RESOURCE)) or a.dangerous
            for a in actions
        )

    async def apply(self, actions: list[Action], steps: Steps | None = None) -> list[Action]:
        """The OVS actions in one transaction (they start and take effect together), then
        the bridges' OpenFlow rules (their bridges and ports exist by then), then the netlink
        phase: addresses, a port's addresses moving into its bridge, routes."""
        netlink_phase = ("ipv4/", ipv6.RESOURCE, migrate.RESOURCE, routes.RESOURCE)
        flows = [a for a in actions if a.resource.startswith(openflow.RESOURCE)]
        ovs = [a for a in actions if not a.resource.startswith((*netlink_phase, openflow.RESOURCE))]
        addresses = [a for a in actions if a.resource.startswith(netlink_phase)]
        report(steps, ovs, False)
        done = await self._transact(ovs) if ovs else []
        report(steps, done, True)
        if flows:
            report(steps, flows, False)
            done = await openflow.apply_flows(self.endpoints.ovs_rundir, flows, done)
            await self._mark_flows(flows, done)
            report(steps, flows, True)
        if not addresses:
            return done
        report(steps, addresses, False)
        finished = await apply_ipv4(addresses, done)
        report(steps, finished[len(done) :], True)
        return finished

    async def _mark_flows(self, flows: list[Action], done: list[Action]) -> None:
        """Mark the bridges that now carry op-dbus's rules (openflow.MARK_KEY), unmark the
        others; the flows are in, so a failure reports them done (the rollback undoes them)."""
        try:
            await (await self._ovsdb()).transact(VSWITCH_DB, *openflow.mark_ops(flows))
        except OvsdbError as exc:
            raise ApplyError(flows[0], f"OVSDB: {exc}", done) from exc

    async def _transact(self, actions: list[Action]) -> list[Action]:
        """All OVS actions in one guarded transaction, rebuilt from a fresh read on conflict;
        then, when an ovs-vswitchd serves the database, wait until it has applied it."""
        client = await self._ovsdb()
        picks_datapath = _picks_datapath(actions)
        for attempt in range(1, ATTEMPTS + 1):
            kernel = await netlink.kernel_ovs_datapath() if picks_datapath else True
            snap = await self._snapshot(kernel_datapath=kernel, fresh=attempt > 1)
            builder = TransactionBuilder(snap)
            try:
                ops = builder.build(actions)
            except ConflictError as exc:
                raise ApplyError(exc.action, exc.reason) from exc
            if not ops:  # a fresh read shows nothing left to change
                return list(actions)
            try:
                vswitchd = bool(snap.datapath_types) and await vswitchd_connected(client)
                if vswitchd:
                    builder.ask_vswitchd(actions[0])
                results = await client.transact(VSWITCH_DB, *builder.ops)
            except OvsdbOpError as exc:
                failed = builder.action_of[min(exc.index, len(builder.ops) - 1)]
                if is_wait_conflict(exc) and attempt < ATTEMPTS:
                    continue
                why = "others kept changing the rows it read" if is_wait_conflict(exc) else exc
                raise ApplyError(failed, f"OVSDB transaction refused: {why}") from exc
            except OvsdbError as exc:
                raise ApplyError(actions[0], f"OVSDB: {exc}") from exc
            if vswitchd:
                await _wait_for_vswitchd(client, results[-1], actions, self._replica())
            return list(actions)
        raise AssertionError("unreachable")

    async def verify(self, desired: Section) -> list[Mismatch]:
        return net_mismatches(await self.query(desired), desired)


def net_mismatches(current: Section, desired: Section) -> list[Mismatch]:
    """What differs between `current` and `desired`, and the desired bridges and ports that
    vswitchd could not realise (an error, or no ofport), once it reports datapath types."""
    found = [
        mismatch
        for action in diff_net(current, desired)
        for mismatch in action.mismatches(("name", "bridge"))
        if mismatch.expected != mismatch.actual  # a gateway re-asserted, not missing
    ]
    if not current.get("datapath_types"):
        return found
    bridges, ports = split(current)
    want_bridges, want_ports = split(desired)
    for name in want_bridges.keys() | want_ports.keys():
        entry = bridges.get(name) or ports.get(name)
        if entry is None:
            continue
        if entry.get("error"):
            found.append(Mismatch(name, "error", None, entry["error"]))
        if not isinstance(entry.get("ofport"), int) or entry["ofport"] < 0:
            found.append(Mismatch(name, "ofport", "assigned", entry.get("ofport")))
    return found


async def _wait_for_vswitchd(
    client: OvsdbClient,
    selected: dict[str, Any],
    actions: list[Action],
    replica: Replica | None,
) -> None:
    """Until vswitchd's cur_cfg reaches the next_cfg our transaction set (`selected`), as
    ovs-vsctl waits; the transaction has committed, so a failure reports it as done. With
    the daemon's replica, it is the replica that must show it: the verify that follows
    reads the replica, which then holds what vswitchd reported."""
    timeout = VSWITCHD_TIMEOUT + VSWITCHD_TIMEOUT_PER_ACTION * len(actions)
    next_cfg = selected["rows"][0]["next_cfg"]
    try:
        if replica is not None:
            await replica.wait_cur_cfg(next_cfg, timeout)
        else:
            await wait_for_cur_cfg(client, next_cfg, timeout)
    except OvsdbError as exc:
        raise ApplyError(actions[0], str(exc), list(actions)) from exc


def _drops_owned(snap: Snapshot, scope: Section) -> bool:
    """Whether an owned bridge or port exists that `scope` does not name or marks absent (an
    apply may delete it: with prune, or marked), or an owned port it puts on another bridge
    (deleted there and made anew)."""
    named = set()
    for entry in scope.get("interfaces", []):
        if entry.get("state") != "absent":  # one marked absent goes, addresses and all
            named.add(entry["name"])
        named.update(entry.get("ports") or [])
    rows = [*snap.bridges.values(), *snap.ports.values()]
    if any(owned(row) and row["name"] not in named for row in rows):
        return True
    declared = split(scope)[1]
    for bridge in snap.bridges.values():
        for port in snap.ports_of(bridge):
            want = declared.get(port["name"])
            if want is not None and owned(port) and want.get("bridge") != bridge["name"]:
                return True
    return False


def _flow_bridges(snap: Snapshot, scope: Section | None) -> list[str]:
    """Bridges whose flows are read: with an ovs-vswitchd (which holds them), those marked
    as carrying op-dbus's rules for a whole query, else those the scope declares `openflow` on."""
    if not snap.datapath_types:
        return []
    if scope is None:
        marked = (
            n for n, row in snap.bridges.items() if openflow.MARK_KEY in to_map(row["external_ids"])
        )
        return sorted(marked)
    declared = {
        entry["name"]
        for entry in scope.get("interfaces", [])
        if entry.get("type") == "ovs-bridge" and entry.get("openflow") is not None
    }
    return sorted(declared & snap.bridges.keys())


def _port_names(scope: Section | None) -> set[str]:
    """Devices whose addresses a plan may move: the ports `scope` declares, and those a
    checkpoint (a rollback's scope) saw holding addresses."""
    if not scope:
        return set()
    return set(split(scope)[1]) | set(scope.get("port_addresses") or {})


def _picks_datapath(actions: list[Action]) -> bool:
    """Whether a bridge gets OVS's default datapath (created without one, or one cleared), so
    whether the kernel's datapath must be checked for."""
    return any(
        a.resource.startswith("bridge/")
        and (
            (a.kind == ActionKind.CREATE and not a.after.get("datapath"))
            or (a.kind == ActionKind.MODIFY and "datapath" in a.after and not a.after["datapath"])
        )
        for a in actions
    )


def entries_with_ipv4(
    snap: Snapshot,
    net: netlink.NetState | None,
    declared_ports: frozenset[str] | set[str] = frozenset(),
) -> Section:
    """The section from one OVSDB snapshot and one netlink read (None: ipv4, ipv6 and routes
    left out), with `port_addresses`: what system ports, and devices declared as ports, hold
    (migrate.py). `routes` shows only op-dbus's own routes, and only where there are some."""
    interfaces: list[dict[str, Any]] = []
    ports: list[dict[str, Any]] = []
    for name in sorted(snap.bridges):
        bridge = snap.bridges[name]
        interfaces.append(bridge_entry(snap, bridge))
        _, members = snap.members(bridge)
        ports.extend(
            port_entry(snap, bridge, port) for port in sorted(members, key=lambda p: p["name"])
        )
    interfaces.extend(ports)
    ours = routes.by_device(net) if net is not None else {}
    for entry in interfaces:
        if net is not None and entry["type"] != "ovs-port" and entry["name"] in net.up:
            entry["ipv4"] = ipv4_of(entry["name"], net)
            entry["ipv6"] = ipv6.ipv6_of(entry["name"], net)
        if entry["type"] in ROUTED_TYPES and entry["name"] in ours:
            entry["routes"] = [routes.entry_of(r) for r in ours[entry["name"]]]
    section: Section = {"interfaces": interfaces, "datapath_types": snap.datapath_types}
    if net is not None:
        system_ports = {p["name"] for p in ports if p["type"] == "ovs-port"}
        held = migrate.port_addresses(system_ports | declared_ports, net)
        if held:
            section["port_addresses"] = held
    return section
