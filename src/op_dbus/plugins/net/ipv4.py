"""The net plugin's netlink side: links up or down, IPv4 addresses, op-dbus's default route,
ports' addresses moved to their bridges (migrate.py), and static routes (routes.py).

An apply phase reads the namespace once (waiting there for devices vswitchd has not created
yet), plans every interface's steps against that one view, keeping the view current as it
goes (a route the first interface removes is gone for the next), and runs all steps on one
socket; if one fails, the ones before it are undone in reverse. The cost grows with the
number of interfaces, never with its square. Addresses change make-before-break: new ones
are added before old ones go, with `promote_secondaries` on while a primary is removed, and
the declared gateway is asserted again after the change.
"""

from __future__ import annotations

from typing import Any

from op_dbus.native import netlink
from op_dbus.plugins.base import Action, ApplyError
from op_dbus.plugins.net import ipv6, migrate, routes

LINK_TIMEOUT = 5.0
"""How long a device may take to appear once vswitchd has applied the OVSDB change."""


def ipv4_of(name: str, net: netlink.NetState) -> dict[str, Any]:
    """The `ipv4` entry of device `name` as read."""
    ipv4: dict[str, Any] = {
        "enabled": net.up[name],
        "dhcp": False,
        "address": [{"ip": ip, "prefix": prefix} for ip, prefix in sorted(net.addresses[name])],
    }
    gateways = [r.gateway for r in net.default_routes if r.ifname == name and r.gateway]
    if gateways:
        ipv4["gateway"] = gateways[0]
    return ipv4


async def apply_ipv4(actions: list[Action], done: list[Action]) -> list[Action]:
    """Carry out the `ipv4/`, `ipv6/`, `address-move/` and `routes/` actions; `done` are the
    batch's actions that took effect before.

    Returns `done` with these added; ApplyError names the action that failed (a device that
    did not appear, or a refused request) with `done` (the phase's steps were undone) or, if
    undoing failed too, with the actions before it."""
    names = [action.after["name"] for action in actions]
    try:
        net = await netlink.read_state(wait_for=names, timeout=LINK_TIMEOUT)
    except netlink.NetlinkError as exc:
        raise ApplyError(actions[0], str(exc), done) from exc
    for action, name in zip(actions, names, strict=True):
        if name not in net.index:
            raise ApplyError(
                action,
                f"device {name} did not appear within {LINK_TIMEOUT:.0f} s"
                " (is ovs-vswitchd running, in this network namespace?)",
                done,
            )
    steps: list[netlink.Step] = []
    owner: list[int] = []  # owner[i]: the position in `actions` of the action step i serves
    planner: routes.Planner | None = None  # made once the moves and addresses are planned
    for position, action in enumerate(actions):
        if action.resource.startswith(migrate.RESOURCE):
            planned = migrate.move_steps(action.after, net)
        elif action.resource.startswith(routes.RESOURCE):
            planner = planner or routes.Planner(net)
            try:
                planned = planner.steps(action.after)
            except routes.RouteClash as exc:
                raise ApplyError(action, str(exc), done) from exc
        elif action.resource.startswith(ipv6.RESOURCE):
            planned = ipv6.steps_for(action.after, net)
        else:
            planned = steps_for(action.after, net)
        steps += planned
        owner += [position] * len(planned)
    try:
        await netlink.run_steps(steps)
    except netlink.StepError as exc:
        failed = owner[exc.index]
        took = done if exc.undone else [*done, *actions[:failed]]
        raise ApplyError(actions[failed], str(exc), took) from exc
    return [*done, *actions]


def steps_for(after: dict[str, Any], net: netlink.NetState) -> list[netlink.Step]:
    """The requests that bring one interface's link, addresses and default route to `after`,
    planned against `net`, which is updated to what they will leave behind."""
    name = after["name"]
    index = net.index[name]
    steps: list[netlink.Step] = []
    want_up = after.get("enabled")
    if want_up is None and (after.get("address") or after.get("gateway")):
        want_up = True
    if want_up is not None and net.up.get(name) != want_up:
        steps.append(netlink.set_up(index, name, want_up))
        net.up[name] = want_up
    changed = False
    if "address" in after:
        steps += _address_steps(name, index, after["address"], net)
        changed = bool(steps)
    if "gateway" in after:
        steps += gateway_steps(name, after["gateway"], net, net.default_routes, reassert=changed)
    return steps


def _address_steps(
    name: str, index: int, declared: list[dict[str, Any]], net: netlink.NetState
) -> list[netlink.Step]:
    """Make before break: the missing addresses first, then the others removed, secondaries
    before primaries, with promote_secondaries on meanwhile (set back after) so that removing
    a primary never takes a kept address of its subnet with it."""
    wanted = [(a["ip"], a["prefix"]) for a in declared]
    have = list(net.addresses.get(name, []))
    steps = [netlink.add_address(index, name, *a) for a in wanted if a not in have]
    gone = [a for a in reversed(have) if a not in wanted]
    promote = gone and not netlink.promotes_secondaries(name)
    if promote:
        steps.append(netlink.promote_secondaries(name, True))
    steps += [netlink.remove_address(index, name, *a) for a in gone]
    if promote:
        steps.append(netlink.promote_secondaries(name, False))
    net.addresses[name] = [*[a for a in have if a in wanted], *[a for a in wanted if a not in have]]
    return steps


def gateway_steps(
    name: str,
    gateway: str | None,
    net: netlink.NetState,
    routes: list[netlink.Route],
    *,
    reassert: bool = False,
) -> list[netlink.Step]:
    """Our default route via `gateway` on `name` (None: none of ours on `name`); `routes` are
    the view's default routes of the gateway's family, kept current.

    Only routes op-dbus created are ever removed; a foreign default route stays, and if it
    occupies the slot, adding ours fails with a message saying so. `reassert`: the device's
    addresses change first, which can take the route with them, so it is added again unless
    still there.
    """
    if gateway is not None and any(r.gateway == gateway and r.ifname == name for r in routes):
        if reassert:
            return [netlink.add_default_route(net.index[name], name, gateway, exists_ok=True)]
        return []
    gone = [r for r in routes if r.owned and (r.ifname == name or gateway is not None)]
    steps = [netlink.remove_default_route(r, net.index[r.ifname]) for r in gone]
    routes[:] = [r for r in routes if r not in gone]
    if gateway is None:
        return steps
    foreign = [r for r in routes if not r.owned]
    hint = ""
    if foreign:
        others = ", ".join(f"via {r.gateway or '-'} dev {r.ifname}" for r in foreign)
        hint = (
            f"; a default route op-dbus did not create exists ({others}),"
            " and op-dbus never removes those"
        )
    steps.append(netlink.add_default_route(net.index[name], name, gateway, hint))
    routes.append(netlink.Route(gateway, name, netlink.OWN_PROTO))
    return steps
