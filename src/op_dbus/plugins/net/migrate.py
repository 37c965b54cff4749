"""Moving a port's IPv4 addresses and routes to its bridge, in the order that keeps the host
reachable (docs/net.md, "A NIC with an address joins a bridge").

A NIC given to an Open vSwitch bridge no longer takes part in IP itself: its addresses must
live on the bridge's device. The move is one plan action, `address-move/PORT->BRIDGE`, whose
`after` names the device that ends up holding the addresses and routes (`name`), where they
come from (`from`), and what moves. Its steps: the target up; the addresses added to it; every
route of the source (foreign ones too, with table, metric, proto, scope, type and preferred
source as they were) added beside the original; only then the source's routes and addresses
removed. The netlink phase undoes its steps in reverse if one fails, so a failed move leaves
the source exactly as it was. A rollback after a completed move is the same action the other
way (`address-move/BRIDGE->PORT`), from the checkpoint's `port_addresses`.
"""

from __future__ import annotations

from typing import Any

from op_dbus.native import netlink
from op_dbus.plugins.base import Action, ActionKind

PLUGIN = "net"
RESOURCE = "address-move/"


def port_addresses(names: set[str], net: netlink.NetState) -> dict[str, dict[str, Any]]:
    """For each device of `names` holding IPv4 addresses: its addresses (in the kernel's order,
    primaries first) and its routes, bar the subnet routes the kernel makes for the addresses."""
    found: dict[str, dict[str, Any]] = {}
    for name in sorted(names):
        addresses = net.addresses.get(name) or []
        if not addresses:
            continue
        routes = [
            route_entry(r)
            for r in net.routes
            if r.ifname == name and r.proto != netlink.KERNEL_PROTO
        ]
        found[name] = {
            "address": [{"ip": ip, "prefix": n} for ip, n in addresses],
            "routes": routes,
        }
    return found


def route_entry(route: netlink.KernelRoute) -> dict[str, Any]:
    """A route as the plan shows it: every attribute but the device."""
    entry = route.as_dict()
    del entry["ifname"]
    return entry


def move_action(source: str, target: str, held: dict[str, Any]) -> Action:
    """The action moving what `source` holds (`held`: a `port_addresses` entry) to `target`."""
    before = {"name": source, **held}
    after = {"name": target, "from": source, "reason": _reason(source, target, held), **held}
    return Action(PLUGIN, ActionKind.MODIFY, f"{RESOURCE}{source}->{target}", before, after)


def _reason(source: str, target: str, held: dict[str, Any]) -> str:
    addresses = ", ".join(f"{a['ip']}/{a['prefix']}" for a in held["address"]) or "no address"
    routes = len(held["routes"])
    return (
        f"{source} holds {addresses} and {routes} route(s); they move to {target}"
        f" ({target} gets them before {source} gives them up, so the host stays reachable)"
    )


def moves(
    want_ports: dict[str, dict], current: dict[str, Any], checkpoint: dict[str, Any] | None
) -> list[Action]:
    """The moves a plan needs: each declared system port holding addresses gives them to its
    bridge; with `checkpoint` (a rollback's `port_addresses`), each port that held addresses
    then gets back what it lacks now, from the bridge it is on (and nothing moves forward)."""
    held = current.get("port_addresses") or {}
    found: list[Action] = []
    if checkpoint is None:
        for name, port in sorted(want_ports.items()):
            if port.get("type", "ovs-port") == "ovs-port" and held.get(name):
                found.append(move_action(name, port["bridge"], held[name]))
        return found
    for name, was in sorted((checkpoint.get("port_addresses") or {}).items()):
        now = held.get(name) or {"address": [], "routes": []}
        lacking = {key: [item for item in was[key] if item not in now[key]] for key in was}
        if any(lacking.values()):
            bridge = next((p["bridge"] for p in _ports(current) if p["name"] == name), "")
            found.append(move_action(bridge, name, lacking) if bridge else _restore(name, lacking))
    return found


def _ports(section: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in section.get("interfaces") or [] if e.get("bridge")]


def _restore(name: str, lacking: dict[str, Any]) -> Action:
    after = {"name": name, "from": "", "reason": "restoring what it held", **lacking}
    return Action(PLUGIN, ActionKind.MODIFY, f"{RESOURCE}{name}", None, after)


def move_steps(after: dict[str, Any], net: netlink.NetState) -> list[netlink.Step]:
    """The requests of one move, planned against `net`, which is updated to what they leave."""
    target, source = after["name"], after.get("from") or ""
    index = net.index[target]
    steps: list[netlink.Step] = []
    if not net.up.get(target):
        steps.append(netlink.set_up(index, target, True))
        net.up[target] = True
    held = net.addresses.setdefault(target, [])
    for address in after["address"]:
        pair = (address["ip"], address["prefix"])
        if pair not in held:
            steps.append(netlink.add_address(index, target, *pair))
            held.append(pair)
    routes = [netlink.KernelRoute(**{**r, "ifname": source}) for r in after["routes"]]
    for route in routes:
        copy = route.on(target)
        if copy not in net.routes:
            steps.append(netlink.add_route(copy, index))
            net.routes.append(copy)
            if copy.table == netlink.MAIN_TABLE and not copy.dst_len:
                net.default_routes.append(netlink.Route(copy.gateway, target, copy.proto))
    if source not in net.index:  # gone with its bridge: nothing left to take away
        return steps
    source_index = net.index[source]
    for route in routes:
        if route in net.routes:
            steps.append(netlink.remove_route(route, source_index))
            net.routes.remove(route)
            old = netlink.Route(route.gateway, source, route.proto)
            if old in net.default_routes and not route.dst_len:
                net.default_routes.remove(old)
    moved = {(a["ip"], a["prefix"]) for a in after["address"]}
    # secondaries first: removing a primary takes its subnet's secondaries with it
    for pair in reversed(list(net.addresses.get(source, []))):
        if pair in moved:
            steps.append(netlink.remove_address(source_index, source, *pair))
            net.addresses[source].remove(pair)
    return steps
