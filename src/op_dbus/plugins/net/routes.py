"""Static routes on bridges and internal ports (`interfaces[].routes`, docs/net.md).

Every route op-dbus adds carries the rtnetlink proto `netlink.OWN_PROTO`; query lists only
those (bar the main table's default route, which is `ipv4.gateway`), and only those are ever
removed: a foreign route, on the same device and in the same table, is never touched. A route
is identified as the kernel does, by destination, table and metric; a new `via` for one is
added beside the old route before the old one goes (make before break). One plan action per
interface, `routes/NAME`, whose `after.routes` is the whole list the interface ends with.

Partial files add (docs/decisions.md, "What a file deletes"): a `routes` list names what must
be there, `state: "absent"` removes one, and only with prune (or a rollback's checkpoint) is
the list the whole of the interface's routes. Planning groups the netlink read by device
once, so an apply phase costs the number of routes, not interfaces times routes.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from op_dbus.model.route_rules import route_key
from op_dbus.native import netlink
from op_dbus.plugins.base import Action, ActionKind

PLUGIN = "net"
RESOURCE = "routes/"


class RouteClash(Exception):
    """A route op-dbus did not create holds the slot (destination, table, metric) of one it
    must add; op-dbus never removes those."""


def _is_ours(route: netlink.KernelRoute) -> bool:
    """Made by op-dbus, and not its main-table default route (that one is `ipv4.gateway`)."""
    gateway_route = route.dst_len == 0 and route.table == netlink.MAIN_TABLE
    return route.proto == netlink.OWN_PROTO and not gateway_route


def by_device(net: netlink.NetState) -> dict[str, list[netlink.KernelRoute]]:
    """op-dbus's static routes per device, from one read."""
    grouped: dict[str, list[netlink.KernelRoute]] = {}
    for route in net.routes:
        if _is_ours(route):
            grouped.setdefault(route.ifname, []).append(route)
    return grouped


def entry_of(route: netlink.KernelRoute) -> dict[str, Any]:
    """A route as query shows it and a file writes it: every field spelled out."""
    entry: dict[str, Any] = {"to": f"{route.dst}/{route.dst_len}"}
    if route.gateway:
        entry["via"] = route.gateway
    entry["metric"] = route.metric
    entry["table"] = route.table
    return entry


def normal(entry: dict[str, Any]) -> dict[str, Any]:
    """A declared route with its defaults filled in (main table, the family's metric), in
    query's spelling, so that declared and read routes compare equal."""
    key = route_key(entry)
    if key is None:  # validation refuses these first
        raise ValueError(f"invalid route {entry!r}")
    to, table, metric = key
    normalised: dict[str, Any] = {"to": to}
    if entry.get("via"):
        normalised["via"] = entry["via"]
    return {**normalised, "metric": metric, "table": table}


def _as_set(routes: list[dict[str, Any]]) -> set[tuple[Any, ...]]:
    return {tuple(sorted(r.items())) for r in routes}


def _key(entry: dict[str, Any]) -> tuple[str, int, int]:
    return (entry["to"], entry["table"], entry["metric"])


def target(have: list[dict[str, Any]], want: list[dict[str, Any]], pruning: bool) -> list[dict]:
    """The routes an interface ends with: the listed ones (a listed route replaces the one of
    its key), without those marked absent, and the others it has unless `pruning`."""
    kept = {} if pruning else {_key(r): r for r in have}
    for entry in want:  # in order: a daemon's runtime change lays its list after the file's
        route = normal(entry)
        if entry.get("state") == "absent":
            kept.pop(_key(route), None)
        else:
            kept[_key(route)] = route
    return list(kept.values())


def route_action(
    name: str, have: list[dict[str, Any]], want: list[dict[str, Any]], pruning: bool
) -> Action | None:
    """The `routes/NAME` action bringing `have` (read) to what `want` (declared) asks, or None
    when nothing differs."""
    after = target(have, want, pruning)
    if _as_set(after) == _as_set(have):
        return None
    return Action(
        PLUGIN,
        ActionKind.MODIFY,
        f"{RESOURCE}{name}",
        {"routes": have},
        {"name": name, "routes": after},
    )


def kernel_route(name: str, entry: dict[str, Any]) -> netlink.KernelRoute:
    """The kernel's route for a declared one on device `name`, marked as op-dbus's."""
    dst, _, length = entry["to"].partition("/")
    via = entry.get("via") or ""
    scope = netlink.LINK_SCOPE if not via and ":" not in dst else 0
    return netlink.KernelRoute(
        dst, int(length), name, via, entry["table"], entry["metric"], netlink.OWN_PROTO, scope
    )


def _identity(route: netlink.KernelRoute) -> tuple[Any, ...]:
    """What a file can say of a route (scope, type and the rest are the kernel's)."""
    return (route.dst, route.dst_len, route.ifname, route.gateway, route.table, route.metric)


def _added(route: netlink.KernelRoute, index: int) -> netlink.Step:
    """Adding `route`, with what to check when the kernel refuses its next hop."""
    step = netlink.add_route(route, index)
    if not route.gateway:
        return step
    hint = f" (a next hop must be on {route.ifname}'s link, in a subnet of its addresses)"
    return replace(step, hint=hint)


class Planner:
    """Plans the route actions of one apply phase against one netlink read, grouped once."""

    def __init__(self, net: netlink.NetState) -> None:
        self.net = net
        self.ours = by_device(net)
        self.foreign = {
            (r.dst, r.dst_len, r.table, r.metric): r
            for r in net.routes
            if r.proto != netlink.OWN_PROTO
        }

    def steps(self, after: dict[str, Any]) -> list[netlink.Step]:
        """Link up, the missing routes added, then the ones no longer wanted removed; the
        planner's view follows. RouteClash: a foreign route holds a wanted route's slot."""
        name = after["name"]
        index = self.net.index[name]
        steps: list[netlink.Step] = []
        wanted = [kernel_route(name, entry) for entry in after["routes"]]
        if wanted and not self.net.up.get(name):
            steps.append(netlink.set_up(index, name, True))
            self.net.up[name] = True
        have = self.ours.get(name, [])
        there = {_identity(r) for r in have}
        for route in wanted:
            if _identity(route) in there:
                continue
            clash = self.foreign.get((route.dst, route.dst_len, route.table, route.metric))
            if clash is not None:
                raise RouteClash(
                    f"adding route {route.describe()}: a route op-dbus did not create holds its"
                    f" destination, table and metric ({clash.describe()}, proto {clash.proto}),"
                    " and op-dbus never removes those; give this route another metric"
                )
            steps.append(_added(route, index))
        kept = {_identity(r) for r in wanted}
        gone = [r for r in have if _identity(r) not in kept]
        steps += [replace(netlink.remove_route(route, index), gone_ok=True) for route in gone]
        self.ours[name] = wanted
        return steps
