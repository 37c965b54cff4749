"""Rules of static routes that relate fields to each other: where routes may go, `via` of
`to`'s family, no second way to write the main table's default route, each route once.

Like rules.py they read the raw document and skip values of the wrong type (the fields
report those), so every error shows at once.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from op_dbus.model.paths import Loc, format_path
from op_dbus.model.route_fields import (
    MAIN_TABLE,
    ROUTES_MAX,
    check_metric,
    check_route_to,
    check_route_via,
    check_table,
)

ROUTED_TYPES = ("ovs-bridge", "ovs-internal")
"""Interfaces that carry routes: the ones that carry addresses."""
DEFAULT_IN_MAIN = (
    "is a default route in the main table: that is ipv4.gateway (op-dbus keeps one default"
    " route there); a default route in another table is allowed"
)
IPV6_DEFAULT_METRIC = 1024
"""What the kernel stores for an IPv6 route given metric 0 (or none)."""

RouteKey = tuple[str, int, int]
"""What identifies a route, as the kernel does: destination, table, metric."""


def _valid(check: Any, value: Any) -> Any:
    try:
        return check(value)
    except ValueError:
        return None


def route_key(route: dict[str, Any]) -> RouteKey | None:
    """(to, table, metric) of a route entry with the defaults filled in (main table; metric
    0, or 1024 for IPv6 as the kernel keeps it), or None when a field is invalid."""
    to = _valid(check_route_to, route.get("to"))
    table = MAIN_TABLE if route.get("table") is None else _valid(check_table, route["table"])
    metric = route.get("metric")
    if to is None or table is None or (metric is not None and _valid(check_metric, metric) is None):
        return None
    if metric is None:
        metric = IPV6_DEFAULT_METRIC if ":" in to else 0
    return (to, table, metric)


class RouteRules:
    """The routes of every interface of one net section; `errors` collects (loc, why)."""

    def __init__(self) -> None:
        self.errors: list[tuple[Loc, str]] = []
        self.seen: dict[RouteKey, Loc] = {}

    def interface(self, iface: dict[str, Any], loc: Loc) -> None:
        routes = iface.get("routes")
        if routes is None or not isinstance(routes, list):
            return
        kind = iface.get("type")
        if kind not in ROUTED_TYPES and isinstance(kind, str):
            why = f"not allowed on an {kind}: routes go on the bridge or an ovs-internal port"
            self.errors.append(((*loc, "routes"), why))
            return
        if len(routes) > ROUTES_MAX:
            why = f"must have at most {ROUTES_MAX} entries, got {len(routes)}"
            self.errors.append(((*loc, "routes"), why))
            return
        for j, route in enumerate(routes):
            if isinstance(route, dict):
                self._route(route, (*loc, "routes", j))

    def _route(self, route: dict[str, Any], loc: Loc) -> None:
        key = route_key(route)
        if key is None:
            return
        to, table, _ = key
        network = ipaddress.ip_network(to)
        via = _valid(check_route_via, route.get("via"))
        if via is not None and ipaddress.ip_address(via).version != network.version:
            self.errors.append(
                ((*loc, "via"), f"is IPv{6 if ':' in via else 4}, but to ({to}) is IPv"
                 f"{network.version}: a next hop is of its destination's family")
            )  # fmt: skip
        absent = route.get("state") == "absent"
        if not network.prefixlen and table == MAIN_TABLE and not absent:
            self.errors.append(((*loc, "to"), DEFAULT_IN_MAIN))
        if network.version == 6 and route.get("metric") == 0:
            self.errors.append(
                ((*loc, "metric"), "must be at least 1 on an IPv6 route: the kernel stores 0"
                 f" as {IPV6_DEFAULT_METRIC} (leave it out for that)")
            )  # fmt: skip
        first = self.seen.setdefault(key, loc)
        if first != loc:
            self.errors.append(
                (loc, f"repeats the route to {to} in table {table} with metric {key[2]}"
                 f" (also at {format_path(first)}); a route is one destination per table"
                 " and metric")
            )  # fmt: skip
