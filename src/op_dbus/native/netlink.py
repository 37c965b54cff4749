"""Links, IPv4 addresses and default routes over rtnetlink (pyroute2), for the net plugin.

pyroute2's IPRoute is synchronous, so each call runs in a worker thread with a socket of its
own; the import is lazy so commands that never touch the network stay fast. Everything acts
on the calling process's network namespace. Default routes op-dbus adds carry the routing
protocol number OWN_PROTO, which is how it later knows which ones it may delete.
"""

from __future__ import annotations

import asyncio
import errno
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from pyroute2 import IPRoute

OWN_PROTO = 73
"""rtnetlink `proto` of the default routes op-dbus creates (unassigned in rt_protos)."""

T = TypeVar("T")


class NetlinkError(Exception):
    """A netlink request failed; the message names the device and what was asked."""


@dataclass(frozen=True)
class Route:
    gateway: str  # "" for a device route (`ip route add default dev X`)
    ifname: str
    proto: int

    @property
    def owned(self) -> bool:
        return self.proto == OWN_PROTO


@dataclass
class NetState:
    """One read of the namespace: link flags, IPv4 addresses per link, default routes."""

    up: dict[str, bool] = field(default_factory=dict)
    addresses: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    default_routes: list[Route] = field(default_factory=list)


def _ipr() -> IPRoute:
    from pyroute2 import IPRoute

    return IPRoute()


async def _run(work: Callable[[IPRoute], T], what: str) -> T:
    def call() -> T:
        with _ipr() as ipr:
            try:
                return work(ipr)
            except NetlinkError:
                raise
            except Exception as exc:
                code = getattr(exc, "code", None)
                why = errno.errorcode.get(code, "") if isinstance(code, int) else ""
                raise NetlinkError(f"{what}: {why + ' ' if why else ''}{exc}") from exc

    return await asyncio.to_thread(call)


def _index(ipr: IPRoute, name: str) -> int:
    found = ipr.link_lookup(ifname=name)
    if not found:
        raise NetlinkError(f"no network device {name!r}")
    return int(found[0])


def _read(ipr: IPRoute) -> NetState:
    state = NetState()
    names: dict[int, str] = {}
    for link in ipr.get_links():
        name = link.get_attr("IFLA_IFNAME")
        names[link["index"]] = name
        state.up[name] = bool(link["flags"] & 1)  # IFF_UP
        state.addresses[name] = []
    for addr in ipr.get_addr(family=2):
        name = names.get(addr["index"])
        if name is not None:
            state.addresses[name].append((addr.get_attr("IFA_ADDRESS"), addr["prefixlen"]))
    for route in ipr.get_routes(family=2, table=254):
        gateway = route.get_attr("RTA_GATEWAY") or ""
        if route["dst_len"] == 0 and (oif := route.get_attr("RTA_OIF")) in names:
            state.default_routes.append(Route(gateway, names[oif], route["proto"]))
    return state


async def read_state() -> NetState:
    """Links, IPv4 addresses and IPv4 default routes (main table) of this namespace."""
    return await _run(_read, "reading links, addresses and routes")


async def wait_for_link(name: str, timeout: float) -> bool:
    """Wait up to `timeout` s for device `name` to exist (vswitchd creates bridges' devices).

    Polled every 20 ms on one socket, in one worker thread."""

    def poll(ipr: IPRoute) -> bool:
        deadline = time.monotonic() + timeout
        while not ipr.link_lookup(ifname=name):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)
        return True

    return await _run(poll, f"waiting for {name}")


async def set_up(name: str, up: bool) -> None:
    await _run(
        lambda ipr: ipr.link("set", index=_index(ipr, name), state="up" if up else "down"),
        f"setting {name} {'up' if up else 'down'}",
    )


async def add_address(name: str, ip: str, prefix: int) -> None:
    await _run(
        lambda ipr: ipr.addr("add", index=_index(ipr, name), address=ip, prefixlen=prefix),
        f"adding {ip}/{prefix} to {name}",
    )


async def remove_address(name: str, ip: str, prefix: int) -> None:
    await _run(
        lambda ipr: ipr.addr("del", index=_index(ipr, name), address=ip, prefixlen=prefix),
        f"removing {ip}/{prefix} from {name}",
    )


def _route_args(ipr: IPRoute, gateway: str, name: str) -> dict[str, Any]:
    return {"dst": "0.0.0.0/0", "gateway": gateway, "oif": _index(ipr, name), "table": 254}


async def add_default_route(gateway: str, name: str) -> None:
    """Add a default route via `gateway` on `name`, marked as op-dbus's (proto OWN_PROTO)."""
    await _run(
        lambda ipr: ipr.route("add", proto=OWN_PROTO, **_route_args(ipr, gateway, name)),
        f"adding default route via {gateway} dev {name}",
    )


async def remove_default_route(route: Route) -> None:
    """Remove one default route; refuses routes op-dbus did not create."""
    if not route.owned:
        raise NetlinkError(f"default route via {route.gateway} dev {route.ifname} is not ours")
    await _run(
        lambda ipr: ipr.route(
            "del", proto=OWN_PROTO, **_route_args(ipr, route.gateway, route.ifname)
        ),
        f"removing default route via {route.gateway} dev {route.ifname}",
    )


def _has_genl_family(name: str) -> bool:
    from pyroute2.netlink.exceptions import NetlinkError as PyrouteError
    from pyroute2.netlink.generic import GenericNetlinkSocket, ctrlmsg

    with GenericNetlinkSocket() as sock:
        try:
            sock.bind(name, ctrlmsg)
        except PyrouteError:
            return False
    return True


async def kernel_ovs_datapath() -> bool:
    """Does the kernel offer Open vSwitch's datapath (generic netlink family ovs_datapath)?

    ovs-vswitchd lists `system` in datapath_types even when the module is missing, and
    bridges of that type then fail; this is the check it lacks.
    """
    return await asyncio.to_thread(_has_genl_family, "ovs_datapath")
