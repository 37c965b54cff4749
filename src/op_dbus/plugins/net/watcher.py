"""The net section's drift events, from OVSDB and from netlink.

OVSDB: a `monitor_cond` on the rows the net and lxc sections are made of. Only configuration
columns are monitored: vswitchd rewrites `statistics` and `status` all the time, and waking up
for those would be a busy loop.

Netlink: link, IPv4 address and IPv4 route notifications of this netns. A raw rtnetlink socket
subscribed to the multicast groups, read from the event loop; messages are not parsed beyond
their type, since the reconciler re-reads the state anyway.
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Callable

from op_dbus.native.ovsdb import VSWITCH_DB, OvsdbClient, OvsdbConnectionError
from op_dbus.plugins.base import Session, Trigger
from op_dbus.plugins.net.ovs import BRIDGE_COLUMNS, PORT_COLUMNS

TABLES: dict[str, list[str] | None] = {
    "Open_vSwitch": ["bridges"],
    "Bridge": BRIDGE_COLUMNS,
    "Port": PORT_COLUMNS,
    "Interface": ["name", "type", "options", "external_ids", "mtu_request", "ofport", "error"],
}
OVSDB_SECTIONS = frozenset({"net", "lxc"})


RTMGRP_LINK, RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE = 0x1, 0x10, 0x40
EVENT_TYPES = {16: "link", 17: "link", 20: "address", 21: "address", 24: "route", 25: "route"}
SECTIONS = frozenset({"net"})
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


def netlink_session(trigger: Trigger) -> Session:
    async def session(connected: Callable[[], None]) -> None:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK, 0)
        loop = asyncio.get_running_loop()
        failed: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            kinds: set[str] = set()
            try:
                while True:
                    kinds |= message_kinds(sock.recv(65536))
            except BlockingIOError:
                pass
            except OSError as exc:  # ENOBUFS: events were lost; the trigger covers them
                if not failed.done():
                    failed.set_exception(exc)
                return
            if kinds:
                trigger(SECTIONS, f"netlink {'/'.join(sorted(kinds))}")

        try:
            sock.bind((0, RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE))
            loop.add_reader(sock.fileno(), readable)
            connected()
            await failed
        finally:
            loop.remove_reader(sock.fileno())
            sock.close()

    return session


def ovsdb_session(target: str, trigger: Trigger) -> Session:
    async def session(connected: Callable[[], None]) -> None:
        async with OvsdbClient() as client:
            await client.connect(target)
            monitor = await client.monitor(VSWITCH_DB, TABLES)
            connected()
            async for update in monitor:
                trigger(OVSDB_SECTIONS, f"ovsdb {'/'.join(sorted(update))}")
        raise OvsdbConnectionError("monitor ended")

    return session
