"""Links, IPv4 and IPv6 addresses and default routes over rtnetlink, for the net plugin.

Reads are our own rtnetlink dumps (standard library sockets) that decode only what the plugin
uses: a link's name, index and up flag, an address's IPv4 and prefix, a route's destination,
device, gateway and the attributes a copy of it must keep (table, metric, proto, scope, type,
preferred source). pyroute2 decodes every attribute of every message, which for 2000 links is about
0.4 s idle and 1.7 s on a busy machine, per read (docs/net.md). Changes go through pyroute2,
all steps of one apply phase on one socket in one worker thread. Everything acts on the calling
process's network namespace. Routes op-dbus adds (default routes, static routes) carry the
routing protocol number OWN_PROTO, which is how it later knows which ones it may delete. IPv6
routes are read only when they carry it: the plugin manages no others.
"""

from __future__ import annotations

import asyncio
import errno
import select
import socket
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

OWN_PROTO = 73
"""rtnetlink `proto` of the routes op-dbus creates (unassigned in rt_protos)."""
MAIN_TABLE = 254
LINK_SCOPE = 253
"""RT_SCOPE_LINK: a route without a gateway, its destination on the link (`ip route` sets it)."""

_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port id
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBi")  # ifaddrmsg: family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # rtmsg: family, dst_len, src_len, tos, table, proto, ...
_ATTR = struct.Struct("=HH")  # rtattr: length, type
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_RTM_NEWLINK, _RTM_GETLINK, _RTM_GETADDR, _RTM_GETROUTE = 16, 18, 22, 26
_NLM_F_REQUEST, _NLM_F_DUMP, _NLM_F_DUMP_INTR = 0x1, 0x300, 0x10
_IFLA_IFNAME, _IFA_ADDRESS, _IFA_LOCAL, _IFA_FLAGS = 3, 1, 2, 8
_IFA_F_PERMANENT = 0x80
"""Set on addresses someone configured; SLAAC's (from router advertisements) lack it."""
RA_PROTO = 9
"""rtnetlink `proto` of routes learnt from IPv6 router advertisements: the kernel's."""
_RTA_DST, _RTA_OIF, _RTA_GATEWAY, _RTA_PRIORITY, _RTA_PREFSRC, _RTA_TABLE = 1, 4, 5, 6, 7, 15
_ROUTE_ATTRS = frozenset(
    {_RTA_DST, _RTA_OIF, _RTA_GATEWAY, _RTA_PRIORITY, _RTA_PREFSRC, _RTA_TABLE}
)
LOCAL_TABLE = 255
KERNEL_PROTO = 2
"""Routes the kernel makes itself (a subnet's route when its address is added)."""
_RTMGRP_LINK = 0x1
_IFF_UP = 0x1
_DUMP_TRIES = 3  # a dump the kernel marks interrupted (the table changed under it) is redone
_RECV_SIZE = 1 << 20


class NetlinkError(Exception):
    """A netlink request failed; the message names the device and what was asked."""


class StepError(NetlinkError):
    """Step `index` of a batch failed; the steps before it took effect."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index
        self.undone = False


@dataclass(frozen=True)
class Route:
    gateway: str  # "" for a device route (`ip route add default dev X`)
    ifname: str
    proto: int

    @property
    def owned(self) -> bool:
        return self.proto == OWN_PROTO


@dataclass(frozen=True)
class KernelRoute:
    """One IPv4 route through one device, with every attribute a copy must keep."""

    dst: str  # "0.0.0.0" with dst_len 0: a default route
    dst_len: int
    ifname: str
    gateway: str = ""
    table: int = MAIN_TABLE
    metric: int = 0
    proto: int = 4  # RTPROT_STATIC, what `ip route add` sets
    scope: int = 0
    type: int = 1  # RTN_UNICAST
    prefsrc: str = ""
    tos: int = 0

    def on(self, ifname: str) -> KernelRoute:
        """The same route through `ifname`."""
        return KernelRoute(**{**self.as_dict(), "ifname": ifname})

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    def describe(self) -> str:
        via = f" via {self.gateway}" if self.gateway else ""
        where = f"dev {self.ifname} table {self.table} metric {self.metric}"
        return f"{self.dst}/{self.dst_len}{via} {where}"

    def request(self, index: int) -> tuple[tuple[str, Any], ...]:
        """pyroute2 `route()` arguments naming exactly this route."""
        args: list[tuple[str, Any]] = [
            ("dst", f"{self.dst}/{self.dst_len}"), ("oif", index), ("table", self.table),
            ("priority", self.metric), ("proto", self.proto), ("scope", self.scope),
            ("type", self.type), ("tos", self.tos),
        ]  # fmt: skip
        if self.gateway:
            args.append(("gateway", self.gateway))
        if self.prefsrc:
            args.append(("prefsrc", self.prefsrc))
        if ":" in self.dst:
            args.append(("family", socket.AF_INET6))
        return tuple(args)


@dataclass
class NetState:
    """One read of the namespace: link indexes and up flags, IPv4 addresses per link, IPv4
    default routes of the main table, and every IPv4 route through a device outside the local
    table (with op-dbus's own IPv6 ones). The apply keeps it current as it plans its steps."""

    index: dict[str, int] = field(default_factory=dict)
    up: dict[str, bool] = field(default_factory=dict)
    addresses: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    default_routes: list[Route] = field(default_factory=list)
    routes: list[KernelRoute] = field(default_factory=list)
    addresses6: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    """Configured IPv6 addresses of global scope per link (no link-local, no SLAAC)."""
    default_routes6: list[Route] = field(default_factory=list)
    """IPv6 default routes of the main table, less those of router advertisements."""
    ipv6_on: dict[str, bool] = field(default_factory=dict)
    """IPv6 on or off per device, read from its sysctl when first asked (plugins/net/ipv6.py)."""


# --- reading: our own dumps ---------------------------------------------------------------
def _socket(groups: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
    try:
        sock.bind((0, groups))
    except OSError:
        sock.close()
        raise
    return sock


def _messages(data: bytes) -> Iterator[tuple[int, int, int, int]]:
    """(type, flags, start of payload, end of message) of each message in one datagram."""
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, kind, flags, _, _ = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size:
            return
        yield kind, flags, offset + _HEADER.size, offset + length
        offset += (length + 3) & ~3


def _attrs(data: bytes, offset: int, end: int, wanted: frozenset[int]) -> dict[int, bytes]:
    """The attributes of `wanted` types between `offset` and `end`; stops once all are seen
    (the kernel puts a link's name first, so a link costs one attribute, not fifty)."""
    found: dict[int, bytes] = {}
    while offset + _ATTR.size <= end and len(found) < len(wanted):
        length, kind = _ATTR.unpack_from(data, offset)
        if length < _ATTR.size:
            break
        if kind & 0x3FFF in wanted:
            found[kind & 0x3FFF] = data[offset + _ATTR.size : offset + length]
        offset += (length + 3) & ~3
    return found


def _dump(sock: socket.socket, kind: int, body: bytes) -> list[tuple[bytes, int, int]]:
    """(datagram, payload start, end) of every message a dump request returns."""
    request = _HEADER.pack(_HEADER.size + len(body), kind, _NLM_F_REQUEST | _NLM_F_DUMP, 1, 0)
    for _ in range(_DUMP_TRIES):
        sock.send(request + body)
        found: list[tuple[bytes, int, int]] = []
        interrupted = done = False
        while not done:
            data = sock.recv(_RECV_SIZE)
            for msg_type, flags, start, end in _messages(data):
                interrupted |= bool(flags & _NLM_F_DUMP_INTR)
                if msg_type == _NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", data, start)
                    raise OSError(-code, errno.errorcode.get(-code, "netlink error"))
                done = msg_type == _NLMSG_DONE
                if done:
                    break
                found.append((data, start, end))
        if not interrupted:
            return found
    raise NetlinkError("the kernel kept changing the table during the dump")


def _read(sock: socket.socket) -> NetState:
    state = NetState()
    names: dict[int, str] = {}
    links = _dump(sock, _RTM_GETLINK, _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0))
    for data, start, end in links:
        _, _, index, flags, _ = _IFINFO.unpack_from(data, start)
        attrs = _attrs(data, start + _IFINFO.size, end, frozenset({_IFLA_IFNAME}))
        name = attrs.get(_IFLA_IFNAME, b"").rstrip(b"\0").decode()
        names[index] = name
        state.index[name] = index
        state.up[name] = bool(flags & _IFF_UP)
        state.addresses[name] = []
    wanted = frozenset({_IFA_ADDRESS, _IFA_LOCAL})
    for data, start, end in _dump(sock, _RTM_GETADDR, _IFADDR.pack(socket.AF_INET, 0, 0, 0, 0)):
        family, prefix, _, _, index = _IFADDR.unpack_from(data, start)
        attrs = _attrs(data, start + _IFADDR.size, end, wanted)
        address = attrs.get(_IFA_LOCAL) or attrs.get(_IFA_ADDRESS)
        if family == socket.AF_INET and index in names and address:
            state.addresses[names[index]].append((socket.inet_ntoa(address), prefix))
    for route in _routes(sock, socket.AF_INET, names):
        state.routes.append(route)
        if route.table == MAIN_TABLE and not route.dst_len:
            state.default_routes.append(Route(route.gateway, route.ifname, route.proto))
    _read6(sock, names, state)
    return state


def _routes(
    sock: socket.socket,
    family: int,
    names: dict[int, str],
    wanted: Callable[[int, int], bool] | None = None,
) -> Iterator[KernelRoute]:
    """The routes of `family` through one device each, outside the local table; with
    `wanted(proto, dst_len)`, only those it keeps, decided before their attributes are
    decoded (IPv6: not the kernel's many)."""
    body = _RTMSG.pack(family, 0, 0, 0, 0, 0, 0, 0, 0)
    for data, start, end in _dump(sock, _RTM_GETROUTE, body):
        found, dst_len, _, tos, table, proto, scope, kind, _ = _RTMSG.unpack_from(data, start)
        if found != family or table == LOCAL_TABLE:
            continue  # the local table: the kernel's own routes for each address
        if wanted is not None and not wanted(proto, dst_len):
            continue
        attrs = _attrs(data, start + _RTMSG.size, end, _ROUTE_ATTRS)
        if _RTA_TABLE in attrs:
            (table,) = struct.unpack("=I", attrs[_RTA_TABLE])
        oif = struct.unpack("=i", attrs[_RTA_OIF])[0] if _RTA_OIF in attrs else None
        if table == LOCAL_TABLE or oif not in names:
            continue  # multipath routes name no single device: not read
        ip = {
            k: socket.inet_ntop(family, attrs[k])
            for k in (_RTA_DST, _RTA_GATEWAY, _RTA_PREFSRC)
            if k in attrs
        }
        metric = struct.unpack("=I", attrs[_RTA_PRIORITY])[0] if _RTA_PRIORITY in attrs else 0
        unspecified = "::" if family == socket.AF_INET6 else "0.0.0.0"
        yield KernelRoute(
            ip.get(_RTA_DST, unspecified), dst_len, names[oif], ip.get(_RTA_GATEWAY, ""), table,
            metric, proto, scope, kind, ip.get(_RTA_PREFSRC, ""), tos,
        )  # fmt: skip


def _read6(sock: socket.socket, names: dict[int, str], state: NetState) -> None:
    """The IPv6 part of `state`: what a state file can declare. The kernel's own link-local
    addresses (fe80::/10, scope link) and what router advertisements configure (addresses
    without IFA_F_PERMANENT, routes of proto RA) are left out. A kernel without IPv6 has none."""
    for name in names.values():
        state.addresses6[name] = []
    try:
        addresses = _dump(sock, _RTM_GETADDR, _IFADDR.pack(socket.AF_INET6, 0, 0, 0, 0))
        routes = list(_routes(sock, socket.AF_INET6, names, _ours_or_default6))
    except OSError as exc:
        if exc.errno == errno.EAFNOSUPPORT:
            return
        raise
    wanted = frozenset({_IFA_ADDRESS, _IFA_FLAGS})
    for data, start, end in addresses:
        family, prefix, flags, scope, index = _IFADDR.unpack_from(data, start)
        attrs = _attrs(data, start + _IFADDR.size, end, wanted)
        if _IFA_FLAGS in attrs:
            (flags,) = struct.unpack("=I", attrs[_IFA_FLAGS])
        address = attrs.get(_IFA_ADDRESS)
        if family != socket.AF_INET6 or index not in names or scope or not address:
            continue
        if flags & _IFA_F_PERMANENT:
            ip = socket.inet_ntop(socket.AF_INET6, address)
            state.addresses6[names[index]].append((ip, prefix))
    for route in routes:
        if route.proto == OWN_PROTO:
            state.routes.append(route)
        if not route.dst_len and route.table == MAIN_TABLE and route.proto not in _NOT_DECLARED:
            state.default_routes6.append(Route(route.gateway, route.ifname, route.proto))


_NOT_DECLARED = (RA_PROTO, KERNEL_PROTO)
"""IPv6 default routes no state file declares: router advertisements', the kernel's."""


def _ours_or_default6(proto: int, dst_len: int) -> bool:
    """The IPv6 routes a read keeps: op-dbus's own, and default routes a file can declare."""
    return proto == OWN_PROTO or (not dst_len and proto not in _NOT_DECLARED)


def _new_links(events: socket.socket, until: float) -> Iterator[str]:
    """Names of links the kernel announces until `until`; ends early if events were lost."""
    while (left := until - time.monotonic()) > 0:
        if not select.select([events], [], [], left)[0]:
            return
        try:
            data = events.recv(_RECV_SIZE)
        except OSError as exc:  # ENOBUFS: more events than the buffer held; caller re-reads
            if exc.errno == errno.ENOBUFS:
                return
            raise
        for msg_type, _, start, end in _messages(data):
            if msg_type == _RTM_NEWLINK:
                attrs = _attrs(data, start + _IFINFO.size, end, frozenset({_IFLA_IFNAME}))
                yield attrs.get(_IFLA_IFNAME, b"").rstrip(b"\0").decode()


def _read_waiting(names: frozenset[str], timeout: float) -> NetState:
    """One read; if devices in `names` are missing, wait for the kernel to announce them (the
    subscription is made before the read, so none is missed), then read once more."""
    with _socket() as sock:
        if not names:
            return _read(sock)
        with _socket(_RTMGRP_LINK) as events:
            state = _read(sock)
            missing = set(names) - state.index.keys()
            if not missing:
                return state
            deadline = time.monotonic() + timeout
            while missing and time.monotonic() < deadline:
                for name in _new_links(events, deadline):
                    missing.discard(name)
                    if not missing:
                        break
                else:  # the deadline passed, or announcements were lost: look again
                    missing -= _read(sock).index.keys()
        return _read(sock)


async def read_state(wait_for: Sequence[str] = (), timeout: float = 0.0) -> NetState:
    """Links, IPv4 addresses and IPv4 default routes (main table) of this namespace, read
    once; devices named in `wait_for` that do not exist yet are waited for up to `timeout` s
    (vswitchd creates bridges' devices). Whether they came: look them up in `index`."""

    def read() -> NetState:
        try:
            return _read_waiting(frozenset(wait_for), timeout)
        except OSError as exc:
            raise NetlinkError(f"reading links, addresses and routes: {exc}") from exc

    return await asyncio.to_thread(read)


# --- changing: pyroute2, one socket per batch ------------------------------------------------
@dataclass(frozen=True)
class Step:
    """One rtnetlink request, as a pyroute2 IPRoute call: `ipr.<method>(command, **args)`.
    `what` names it in errors; `hint` is added to the error when it fails."""

    what: str
    method: str
    command: str
    args: tuple[tuple[str, Any], ...]
    hint: str = ""
    undo: Step | None = None
    """The request that takes this one back, for undoing a failed batch (None: nothing to undo)."""
    exists_ok: bool = False
    """A request that finds its object already there (EEXIST) is done, and has nothing to undo."""
    gone_ok: bool = False
    """A removal that finds its object gone (ESRCH: the kernel took a route with the address
    its next hop was reached by) is done, and has nothing to undo."""


def set_up(index: int, name: str, up: bool, *, undo: bool = True) -> Step:
    state = "up" if up else "down"
    back = set_up(index, name, not up, undo=False) if undo else None
    args = (("index", index), ("state", state))
    return Step(f"setting {name} {state}", "link", "set", args, undo=back)


def add_address(index: int, name: str, ip: str, prefix: int, *, undo: bool = True) -> Step:
    args = (("index", index), ("address", ip), ("prefixlen", prefix))
    back = remove_address(index, name, ip, prefix, undo=False) if undo else None
    return Step(f"adding {ip}/{prefix} to {name}", "addr", "add", args, undo=back)


def remove_address(index: int, name: str, ip: str, prefix: int, *, undo: bool = True) -> Step:
    args = (("index", index), ("address", ip), ("prefixlen", prefix))
    back = add_address(index, name, ip, prefix, undo=False) if undo else None
    return Step(f"removing {ip}/{prefix} from {name}", "addr", "del", args, undo=back)


def add_route(route: KernelRoute, index: int, *, undo: bool = True) -> Step:
    """`route` added beside any route of the same destination and metric (`ip route append`):
    a copy on another device is made before the original goes."""
    back = remove_route(route, index, undo=False) if undo else None
    what = f"adding route {route.describe()}"
    return Step(what, "route", "append", route.request(index), undo=back)


def remove_route(route: KernelRoute, index: int, *, undo: bool = True) -> Step:
    back = add_route(route, index, undo=False) if undo else None
    return Step(
        f"removing route {route.describe()}", "route", "del", route.request(index), undo=back
    )


def promote_secondaries(name: str, on: bool, *, undo: bool = True) -> Step:
    """The device's `promote_secondaries` sysctl: on, removing a primary address keeps the
    secondaries of its subnet (one becomes primary) instead of deleting them with it."""
    back = promote_secondaries(name, not on, undo=False) if undo else None
    args = (("path", f"/proc/sys/net/ipv4/conf/{name}/promote_secondaries"), ("value", int(on)))
    return Step(f"setting {name}'s promote_secondaries to {int(on)}", "sysctl", "", args, undo=back)


def promotes_secondaries(name: str) -> bool:
    try:
        return (
            Path(f"/proc/sys/net/ipv4/conf/{name}/promote_secondaries").read_text().strip() == "1"
        )
    except OSError:
        return False


def set_ipv6(name: str, enabled: bool, *, undo: bool = True) -> Step:
    """IPv6 on device `name` on or off (its `disable_ipv6` sysctl; off drops its addresses)."""
    back = set_ipv6(name, not enabled, undo=False) if undo else None
    args = (("path", f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6"), ("value", int(not enabled)))
    what = f"turning IPv6 {'on' if enabled else 'off'} on {name}"
    return Step(what, "sysctl", "", args, undo=back)


def ipv6_enabled(name: str) -> bool:
    """Whether device `name` has IPv6 on (False too when the kernel has no IPv6)."""
    try:
        return Path(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6").read_text().strip() == "0"
    except OSError:
        return False


def _route_args(gateway: str, index: int) -> tuple[tuple[str, Any], ...]:
    default = "::/0" if ":" in gateway else "0.0.0.0/0"
    route = (("dst", default), ("oif", index), ("table", MAIN_TABLE), ("proto", OWN_PROTO))
    return (*route, ("gateway", gateway)) if gateway else route


def add_default_route(
    index: int, name: str, gateway: str, hint: str = "", *, exists_ok: bool = False
) -> Step:
    """A default route via `gateway` on `name`, marked as op-dbus's (proto OWN_PROTO).
    `exists_ok`: re-asserting one the plan saw, which an address change may have taken."""
    what = f"adding default route via {gateway} dev {name}"
    back = Step(f"removing default route via {gateway} dev {name}", "route", "del",
                _route_args(gateway, index))  # fmt: skip
    return Step(what, "route", "add", _route_args(gateway, index), hint, back, exists_ok)


def remove_default_route(route: Route, index: int) -> Step:
    """Removing one default route; refuses routes op-dbus did not create."""
    if not route.owned:
        raise NetlinkError(f"default route via {route.gateway} dev {route.ifname} is not ours")
    what = f"removing default route via {route.gateway} dev {route.ifname}"
    back = add_default_route(index, route.ifname, route.gateway)
    return Step(
        what, "route", "del", _route_args(route.gateway, index), undo=replace(back, undo=None)
    )


def _run_one(ipr: Any, step: Step) -> bool:
    """Send one request; False when an `exists_ok` request found its object there."""
    if step.method == "sysctl":
        args = dict(step.args)
        Path(args["path"]).write_text(f"{args['value']}\n")
        return True
    try:
        getattr(ipr, step.method)(step.command, **dict(step.args))
    except Exception as exc:
        code = getattr(exc, "code", None)
        if (step.exists_ok and code == errno.EEXIST) or (step.gone_ok and code == errno.ESRCH):
            return False
        raise
    return True


def _why(step: Step, exc: Exception) -> str:
    code = getattr(exc, "code", None) or getattr(exc, "errno", None)
    why = errno.errorcode.get(code, "") if isinstance(code, int) else ""
    return f"{step.what}: {why + ' ' if why else ''}{exc}{step.hint}"


async def run_steps(steps: Sequence[Step]) -> None:
    """Run `steps` in order on one socket; StepError names the first that failed, after the
    steps before it were undone in reverse order (`undone` says whether all of them were)."""

    def run() -> None:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            undo: list[Step] = []
            for position, step in enumerate(steps):
                try:
                    if _run_one(ipr, step) and step.undo is not None:
                        undo.append(step.undo)
                except Exception as exc:
                    failed = []
                    for back in reversed(undo):
                        try:
                            _run_one(ipr, back)
                        except Exception as back_exc:
                            failed.append(_why(back, back_exc))
                    error = StepError(position, _why(step, exc))
                    error.undone = not failed
                    if failed:
                        error.args = (
                            f"{error}; undoing the steps before it failed: {'; '.join(failed)}",
                        )
                    raise error from exc

    if steps:
        await asyncio.to_thread(run)


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
