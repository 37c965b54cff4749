"""Thin helpers over dbus-fast: connect to a system bus by address, read properties, names.

The bus address is configuration (`OPDBUS_SYSTEM_BUS`, what `busctl --address` takes), so
tests and the lab can point op-dbus at a private bus with system-bus semantics.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.errors import DBusError

BUS_NAME = "org.freedesktop.DBus"
BUS_PATH = "/org/freedesktop/DBus"
PROPERTIES = "org.freedesktop.DBus.Properties"

_disconnect_waiters: set[asyncio.Task[None]] = set()


async def connect_system_bus(address: str, *, auth_timeout: float | None = None) -> MessageBus:
    """Connect and say Hello to the system-type bus at `address` (`unix:path=...`)."""
    bus = MessageBus(bus_address=address, bus_type=BusType.SYSTEM, auth_timeout=auth_timeout)
    try:
        await bus.connect()
    except BaseException:  # also on cancellation: never leak the socket
        bus.disconnect()
        raise
    writer = getattr(bus, "_writer", None)
    if writer is not None and hasattr(writer, "sock"):
        writer.sock = _SendOrWait(writer.sock)
    waiter = asyncio.get_running_loop().create_task(_take_disconnect_reason(bus))
    _disconnect_waiters.add(waiter)
    waiter.add_done_callback(_disconnect_waiters.discard)
    return bus


class _SendOrWait:
    """The bus socket as dbus-fast's writer uses it, except that send() on a full socket
    buffer returns 0 (the writer then waits until the socket is writable) instead of raising.
    dbus-fast 5.2 takes that EAGAIN for a lost connection (python-dbus-next#153): a bus slow
    to read from us, e.g. busy with a caller's flood, made the daemon drop off the bus."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def send(self, data: bytes | memoryview) -> int:
        try:
            return self._sock.send(data)
        except BlockingIOError:
            return 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


async def _take_disconnect_reason(bus: MessageBus) -> None:
    """Retrieve why the bus went away (EOFError when dbus-daemon restarts): a connection
    nobody waits on, such as a plugin's, would otherwise log "Future exception was never
    retrieved" with a traceback when it is collected. Whoever cares sees the loss anyway."""
    with contextlib.suppress(Exception):
        await bus.wait_for_disconnect()


async def call(
    bus: MessageBus,
    service: str,
    path: str,
    interface: str,
    member: str,
    signature: str = "",
    body: list[Any] | None = None,
) -> list[Any]:
    """Call one method and return the reply's body; a D-Bus error reply raises DBusError."""
    reply = await bus.call(
        Message(
            destination=service,
            path=path,
            interface=interface,
            member=member,
            signature=signature,
            body=body or [],
        )
    )
    if reply.message_type == MessageType.ERROR:
        raise DBusError(reply.error_name or "org.freedesktop.DBus.Error.Failed", _text(reply))
    return list(reply.body)


async def get_properties(
    bus: MessageBus, service: str, path: str, interface: str
) -> dict[str, Any]:
    """All properties of `interface` on `service` `path` (one GetAll), Variants unwrapped."""
    (values,) = await call(bus, service, path, PROPERTIES, "GetAll", "s", [interface])
    return {name: unwrap(value) for name, value in values.items()}


async def name_has_owner(bus: MessageBus, name: str) -> bool:
    (owned,) = await call(bus, BUS_NAME, BUS_PATH, BUS_NAME, "NameHasOwner", "s", [name])
    return bool(owned)


async def activatable_names(bus: MessageBus) -> list[str]:
    """Names the bus daemon can start on demand (its service files)."""
    (names,) = await call(bus, BUS_NAME, BUS_PATH, BUS_NAME, "ListActivatableNames")
    return list(names)


async def add_match(bus: MessageBus, rule: str) -> None:
    """Ask the bus daemon to route messages matching `rule` (a match rule) to this connection."""
    await call(bus, BUS_NAME, BUS_PATH, BUS_NAME, "AddMatch", "s", [rule])


async def remove_match(bus: MessageBus, rule: str) -> None:
    await call(bus, BUS_NAME, BUS_PATH, BUS_NAME, "RemoveMatch", "s", [rule])


def unwrap(value: Any) -> Any:
    """Plain Python values from a D-Bus value: Variants removed at every depth."""
    if isinstance(value, Variant):
        return unwrap(value.value)
    if isinstance(value, dict):
        return {key: unwrap(item) for key, item in value.items()}
    if isinstance(value, list):
        return [unwrap(item) for item in value]
    return value


def _text(reply: Message) -> str:
    return str(reply.body[0]) if reply.body else ""
