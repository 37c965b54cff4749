"""The net section's drift events: OVSDB updates of its rows (native/vswitch.py), and netlink.

Netlink: link, address and route notifications (IPv4 and IPv6) of this netns. A raw rtnetlink socket
subscribed to the multicast groups, read from the event loop; messages are not parsed beyond
their type, since the reconciler re-reads the state anyway.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable

from op_dbus.native.nlevents import listen
from op_dbus.native.vswitch import config_session
from op_dbus.plugins.base import Changed, Session, Watch, WatchContext

RTMGRP_LINK, RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE = 0x1, 0x10, 0x40
RTMGRP_IPV6_IFADDR, RTMGRP_IPV6_ROUTE = 0x100, 0x400
GROUPS = (
    RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_IFADDR | RTMGRP_IPV6_ROUTE
)
EVENT_TYPES = {16: "link", 17: "link", 20: "address", 21: "address", 24: "route", 25: "route"}
_HEADER = struct.Struct("=IHHII")


def message_kinds(data: bytes) -> set[str]:
    """The kinds of rtnetlink notifications in one datagram (several messages may share it)."""
    kinds, offset = set(), 0
    while offset + _HEADER.size <= len(data):
        length, kind, *_ = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size:
            break
        if kind in EVENT_TYPES:
            kinds.add(EVENT_TYPES[kind])
        offset += (length + 3) & ~3
    return kinds


def netlink_session(changed: Changed) -> Session:
    async def session(connected: Callable[[], None]) -> None:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, 0)
        try:
            sock.bind((0, GROUPS))
        except OSError:
            sock.close()
            raise
        await listen(sock, heard, connected)

    def heard(datagrams: list[bytes]) -> None:
        kinds = set().union(*map(message_kinds, datagrams))
        if kinds:
            changed(f"netlink {'/'.join(sorted(kinds))}")

    return session


def watches(ctx: WatchContext) -> list[Watch]:
    target = ctx.endpoints.ovsdb
    return [
        Watch(f"OVSDB {target}", lambda changed: config_session(target, changed), True),
        Watch("netlink", netlink_session),
    ]
