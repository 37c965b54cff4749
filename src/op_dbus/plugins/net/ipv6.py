"""The net plugin's IPv6: an interface's `ipv6` read from netlink, and the steps that bring
it to a declared one, planned in ipv4.py's netlink phase against the same view.

What a state file can declare is what is reported: IPv6 on or off on the device (its
`disable_ipv6` sysctl), its configured addresses of global scope and op-dbus's default route.
The kernel's own link-local address (fe80::/10) and what router advertisements configure are
the kernel's, neither reported nor touched, so a query pasted back plans nothing (docs/net.md,
IPv6). Addresses are added with duplicate address detection, as `ip` adds them: an address
is tentative for a moment (about a second) before it carries traffic.
"""

from __future__ import annotations

from typing import Any

from op_dbus.native import netlink
from op_dbus.plugins.net import ipv4

RESOURCE = "ipv6/"


def ipv6_of(name: str, net: netlink.NetState) -> dict[str, Any]:
    """The `ipv6` entry of device `name` as read."""
    entry: dict[str, Any] = {
        "enabled": _enabled(name, net),
        "address": [{"ip": ip, "prefix": n} for ip, n in sorted(net.addresses6.get(name, []))],
    }
    gateways = [r.gateway for r in net.default_routes6 if r.ifname == name and r.gateway]
    if gateways:
        entry["gateway"] = gateways[0]
    return entry


def _enabled(name: str, net: netlink.NetState) -> bool:
    """Whether IPv6 is on for `name`, read once per view and kept current by the plan."""
    if name not in net.ipv6_on:
        net.ipv6_on[name] = netlink.ipv6_enabled(name)
    return net.ipv6_on[name]


def steps_for(after: dict[str, Any], net: netlink.NetState) -> list[netlink.Step]:
    """The requests that bring one interface's IPv6 to `after`, planned against `net`, which
    is updated to what they leave behind. Addresses or a gateway turn IPv6 on and the link
    up when they are off (an address on a down link carries nothing)."""
    name = after["name"]
    index = net.index[name]
    steps: list[netlink.Step] = []
    enabled = after.get("enabled")
    wants_traffic = bool(after.get("address") or after.get("gateway"))
    if enabled is None and wants_traffic:
        enabled = True
    if enabled is not None and _enabled(name, net) != enabled:
        steps.append(netlink.set_ipv6(name, enabled))
        net.ipv6_on[name] = enabled
        if not enabled:  # the kernel drops the device's addresses and routes with it
            net.addresses6[name] = []
            net.default_routes6[:] = [r for r in net.default_routes6 if r.ifname != name]
    if wants_traffic and not net.up.get(name):
        steps.append(netlink.set_up(index, name, True))
        net.up[name] = True
    changed = False
    if "address" in after:
        wanted = [(a["ip"], a["prefix"]) for a in after["address"]]
        have = list(net.addresses6.get(name, []))
        moves = [netlink.add_address(index, name, *a) for a in wanted if a not in have]
        moves += [
            netlink.remove_address(index, name, *a) for a in reversed(have) if a not in wanted
        ]
        net.addresses6[name] = [
            *[a for a in have if a in wanted],
            *[a for a in wanted if a not in have],
        ]
        steps += moves
        changed = bool(moves)
    if "gateway" in after:
        routes = net.default_routes6
        steps += ipv4.gateway_steps(name, after["gateway"], net, routes, reassert=changed)
    return steps
