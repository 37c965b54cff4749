"""The net plugin's netlink side: links up or down, IPv4 addresses, op-dbus's default route.

An apply phase reads the namespace once (waiting there for devices vswitchd has not created
yet), plans every interface's steps against that one view, keeping the view current as it
goes (a route the first interface removes is gone for the next), and runs all steps on one
socket. The cost grows with the number of interfaces, never with its square.
"""

from __future__ import annotations

from typing import Any

from op_dbus.native import netlink
from op_dbus.plugins.base import Action, ApplyError

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
    """Carry out the `ipv4/` actions; `done` are the batch's actions that took effect before.

    Returns `done` with these added; ApplyError names the action that failed (a device that
    did not appear, or a refused request) with the ones done before it."""
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
    for position, action in enumerate(actions):
        planned = steps_for(action.after, net)
        steps += planned
        owner += [position] * len(planned)
    try:
        await netlink.run_steps(steps)
    except netlink.StepError as exc:
        failed = owner[exc.index]
        raise ApplyError(actions[failed], str(exc), [*done, *actions[:failed]]) from exc
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
    if "address" in after:
        wanted = {(a["ip"], a["prefix"]) for a in after["address"]}
        have = set(net.addresses.get(name, []))
        steps += [netlink.remove_address(index, name, *a) for a in sorted(have - wanted)]
        steps += [netlink.add_address(index, name, *a) for a in sorted(wanted - have)]
        net.addresses[name] = sorted(wanted)
    if "gateway" in after:
        steps += _gateway_steps(name, after["gateway"], net)
    return steps


def _gateway_steps(name: str, gateway: str | None, net: netlink.NetState) -> list[netlink.Step]:
    """Our default route via `gateway` on `name` (None: none of ours on `name`).

    Only routes op-dbus created are ever removed; a foreign default route stays, and if it
    occupies the slot, adding ours fails with a message saying so.
    """
    routes = net.default_routes
    if gateway is not None and any(r.gateway == gateway and r.ifname == name for r in routes):
        return []
    gone = [r for r in routes if r.owned and (r.ifname == name or gateway is not None)]
    steps = [netlink.remove_default_route(r, net.index[r.ifname]) for r in gone]
    net.default_routes = [r for r in routes if r not in gone]
    if gateway is None:
        return steps
    foreign = [r for r in net.default_routes if not r.owned]
    hint = ""
    if foreign:
        others = ", ".join(f"via {r.gateway or '-'} dev {r.ifname}" for r in foreign)
        hint = (
            f"; a default route op-dbus did not create exists ({others}),"
            " and op-dbus never removes those"
        )
    steps.append(netlink.add_default_route(net.index[name], name, gateway, hint))
    net.default_routes.append(netlink.Route(gateway, name, netlink.OWN_PROTO))
    return steps
