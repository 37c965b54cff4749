"""Talking to a running daemon from the CLI: `query` from its cache, `confirm`, `try`.

Every function returns None when no daemon answers, so callers fall back to doing the work
themselves (reading the host directly, waiting in the foreground).
"""

from __future__ import annotations

import json
from typing import Any

from dbus_fast.errors import DBusError

from op_dbus.daemon.dbus_api import INTERFACE, NAME, PATH
from op_dbus.native.dbus import call, connect_system_bus, name_has_owner


async def call_daemon(
    address: str, member: str, signature: str = "", body: list[Any] | None = None
) -> list[Any] | None:
    """Call one StateManager method; None when the bus or the daemon is not there.

    A D-Bus error from the daemon itself (refused, invalid input) raises DBusError.
    """
    try:
        bus = await connect_system_bus(address, auth_timeout=2.0)
    except Exception:
        return None
    try:
        if not await name_has_owner(bus, NAME):
            return None
        return await call(bus, NAME, PATH, INTERFACE, member, signature, body)
    except DBusError as exc:
        if exc.type == "org.freedesktop.DBus.Error.ServiceUnknown":
            return None
        raise
    finally:
        bus.disconnect()


async def query_daemon(address: str) -> dict[str, Any] | None:
    """`{"state": ..., "skipped": ...}` from the daemon's cache (as `query --json` prints)."""
    reply = await call_daemon(address, "QueryState")
    return None if reply is None else json.loads(reply[0])


async def confirm_daemon(address: str) -> bool | None:
    """True: the pending try is kept; False: none was pending; None: no daemon."""
    reply = await call_daemon(address, "Confirm")
    return None if reply is None else bool(reply[0])


async def try_via_daemon(address: str, text: str, seconds: int) -> dict[str, Any] | None:
    """Apply `text` through the daemon, rolled back unless confirmed within `seconds`."""
    reply = await call_daemon(address, "TryState", "su", [text, seconds])
    return None if reply is None else json.loads(reply[0])
