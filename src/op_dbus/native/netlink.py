"""Links, IPv4 addresses and default routes over rtnetlink, for the net plugin.

Reads are our own rtnetlink dumps (standard library sockets) that decode only what the plugin
uses: a link's name, index and up flag, an address's IPv4 and prefix, a route's table, gateway
and device. pyroute2 decodes every attribute of every message, which for 2000 links is about
0.4 s idle and 1.7 s on a busy machine, per read (docs/net.md). Changes go through pyroute2,
all steps of one apply phase on one socket in one worker thread. Everything acts on the calling
process's network namespace. Default routes op-dbus adds carry the routing protocol number
OWN_PROTO, which is how it later knows which ones it may delete.
"""

from __future__ import annotations

import asyncio
import errno
import select
import socket
import struct
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

OWN_PROTO = 73
"""rtnetlink `proto` of the default routes op-dbus creates (unassigned in rt_protos)."""
MAIN_TABLE = 254

_HEADER = struct.Struct("=IHHII")  # nlmsghdr: length, type, flags, sequence, port id
_IFINFO = struct.Struct("=BxHiII")  # ifinfomsg: family, type, index, flags, change
_IFADDR = struct.Struct("=BBBBi")  # ifaddrmsg: family, prefixlen, flags, scope, index
_RTMSG = struct.Struct("=BBBBBBBBI")  # rtmsg: family, dst_len, src_len, tos, table, proto, ...
_ATTR = struct.Struct("=HH")  # rtattr: length, type
_NLMSG_ERROR, _NLMSG_DONE = 2, 3
_RTM_NEWLINK, _RTM_GETLINK, _RTM_GETADDR, _RTM_GETROUTE = 16, 18, 22, 26
_NLM_F_REQUEST, _NLM_F_DUMP, _NLM_F_DUMP_INTR = 0x1, 0x300, 0x10
_IFLA_IFNAME, _IFA_ADDRESS, _IFA_LOCAL = 3, 1, 2
_RTA_OIF, _RTA_GATEWAY, _RTA_TABLE = 4, 5, 15
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
    """One read of the namespace: link indexes and up flags, IPv4 addresses per link, IPv4
    default routes of the main table. The apply keeps it current as it plans its steps."""

    index: dict[str, int] = field(default_factory=dict)
    up: dict[str, bool] = field(default_factory=dict)
    addresses: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    default_routes: list[Route] = field(default_factory=list)


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
    wanted = frozenset({_RTA_OIF, _RTA_GATEWAY, _RTA_TABLE})
    body = _RTMSG.pack(socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)
    for data, start, end in _dump(sock, _RTM_GETROUTE, body):
        family, dst_len, _, _, table, proto, _, _, _ = _RTMSG.unpack_from(data, start)
        if family != socket.AF_INET or dst_len:
            continue
        attrs = _attrs(data, start + _RTMSG.size, end, wanted)
        if _RTA_TABLE in attrs:
            (table,) = struct.unpack("=I", attrs[_RTA_TABLE])
        oif = struct.unpack("=i", attrs[_RTA_OIF])[0] if _RTA_OIF in attrs else None
        if table == MAIN_TABLE and oif in names:
            gateway = socket.inet_ntoa(attrs[_RTA_GATEWAY]) if _RTA_GATEWAY in attrs else ""
            state.default_routes.append(Route(gateway, names[oif], proto))
    return state


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


def set_up(index: int, name: str, up: bool) -> Step:
    state = "up" if up else "down"
    return Step(f"setting {name} {state}", "link", "set", (("index", index), ("state", state)))


def add_address(index: int, name: str, ip: str, prefix: int) -> Step:
    args = (("index", index), ("address", ip), ("prefixlen", prefix))
    return Step(f"adding {ip}/{prefix} to {name}", "addr", "add", args)


def remove_address(index: int, name: str, ip: str, prefix: int) -> Step:
    args = (("index", index), ("address", ip), ("prefixlen", prefix))
    return Step(f"removing {ip}/{prefix} from {name}", "addr", "del", args)


def _route_args(gateway: str, index: int) -> tuple[tuple[str, Any], ...]:
    route = (("dst", "0.0.0.0/0"), ("oif", index), ("table", MAIN_TABLE), ("proto", OWN_PROTO))
    return (*route, ("gateway", gateway)) if gateway else route


def add_default_route(index: int, name: str, gateway: str, hint: str = "") -> Step:
    """A default route via `gateway` on `name`, marked as op-dbus's (proto OWN_PROTO)."""
    what = f"adding default route via {gateway} dev {name}"
    return Step(what, "route", "add", _route_args(gateway, index), hint)


def remove_default_route(route: Route, index: int) -> Step:
    """Removing one default route; refuses routes op-dbus did not create."""
    if not route.owned:
        raise NetlinkError(f"default route via {route.gateway} dev {route.ifname} is not ours")
    what = f"removing default route via {route.gateway} dev {route.ifname}"
    return Step(what, "route", "del", _route_args(route.gateway, index))


async def run_steps(steps: Sequence[Step]) -> None:
    """Run `steps` in order on one socket; StepError names the first that failed."""

    def run() -> None:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            for position, step in enumerate(steps):
                try:
                    getattr(ipr, step.method)(step.command, **dict(step.args))
                except Exception as exc:
                    code = getattr(exc, "code", None)
                    why = errno.errorcode.get(code, "") if isinstance(code, int) else ""
                    message = f"{step.what}: {why + ' ' if why else ''}{exc}{step.hint}"
                    raise StepError(position, message) from exc

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
