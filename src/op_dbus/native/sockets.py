"""The local ends of live TCP sessions, from the kernel's socket tables.

`/proc/net/tcp` and `/proc/net/tcp6` list the sockets of the reading process's network
namespace (the one op-dbus manages), so no netlink sock_diag client is needed for the one
fact the danger rules want: which local addresses carry an established session.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from pathlib import Path

TABLES = ("/proc/net/tcp", "/proc/net/tcp6")
ESTABLISHED = "01"
HEX = frozenset("0123456789abcdefABCDEF")
MAX_TABLE_BYTES = 64 * 1024 * 1024
"""A bound on what is read (about 400 000 sockets)."""


def _local_address(field: str) -> str | None:
    """The address of a table's `local_address`: 32-bit words printed in hex as the host's
    integers (so packed back natively they are the network-order bytes); an IPv4-mapped
    IPv6 address (`::ffff:a.b.c.d`) is its IPv4 one, other IPv6 ones compressed."""
    address = field.partition(":")[0]
    if len(address) not in (8, 32) or not all(c in HEX for c in address):
        return None
    raw = b"".join(
        struct.pack("=I", int(address[i : i + 8], 16)) for i in range(0, len(address), 8)
    )
    if len(raw) == 4:
        return socket.inet_ntoa(raw)
    address6 = ipaddress.IPv6Address(raw)
    return str(address6.ipv4_mapped or address6)


def parse_table(text: str) -> set[str]:
    """Local addresses of the established sessions in one table's text (loopback left out:
    no interface op-dbus manages carries it)."""
    found: set[str] = set()
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4 or fields[3] != ESTABLISHED:
            continue
        local = _local_address(fields[1])
        if local is not None and not ipaddress.ip_address(local).is_loopback:
            found.add(local)
    return found


def session_addresses() -> set[str]:
    """Local addresses with an established TCP session in this network namespace."""
    found: set[str] = set()
    for table in TABLES:
        try:
            with Path(table).open("rb") as handle:
                text = handle.read(MAX_TABLE_BYTES).decode("ascii", "replace")
        except FileNotFoundError:  # no IPv6 in this kernel
            continue
        found |= parse_table(text)
    return found
