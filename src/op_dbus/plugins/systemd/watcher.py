"""systemd drift events: unit property changes, unit file changes and finished jobs.

Only units the state file declares trigger a check (systemd's full query costs about 0.7 ms per
unit file); unit file changes name no unit, so they always do.
"""

from __future__ import annotations

from collections.abc import Callable

from dbus_fast import Message, MessageType

from op_dbus.native import systemd as sd
from op_dbus.native.dbus import add_match, call, connect_system_bus
from op_dbus.plugins.base import Changed, Session, Watch, WatchContext

UNIT = "org.freedesktop.systemd1.Unit"
UNIT_PREFIX = "/org/freedesktop/systemd1/unit/"
RULES = (
    f"type='signal',sender='{sd.SERVICE}',interface='org.freedesktop.DBus.Properties',"
    f"member='PropertiesChanged',arg0='{UNIT}'",
    f"type='signal',sender='{sd.SERVICE}',path='{sd.PATH}',interface='{sd.MANAGER}',"
    "member='UnitFilesChanged'",
    sd.JOB_REMOVED_RULE,
)


def unit_of_path(path: str) -> str:
    """The unit name of a unit object path (systemd escapes bytes as _XX)."""
    name = path.removeprefix(UNIT_PREFIX)
    out, i = bytearray(), 0
    while i < len(name):
        if name[i] == "_" and _is_hex(name[i + 1 : i + 3]):
            out.append(int(name[i + 1 : i + 3], 16))
            i += 3
        else:
            out += name[i].encode()
            i += 1
    return out.decode(errors="replace")


def _is_hex(text: str) -> bool:
    return len(text) == 2 and all(c in "0123456789abcdefABCDEF" for c in text)


def unit_of_signal(message: Message) -> str | None:
    """The unit a signal is about; "" when it concerns unit files in general."""
    if message.message_type != MessageType.SIGNAL:
        return None
    path = message.path or ""
    if message.member == "PropertiesChanged" and path.startswith(UNIT_PREFIX):
        return unit_of_path(path)
    if message.member == "JobRemoved" and message.interface == sd.MANAGER:
        return str(message.body[2])
    if message.member == "UnitFilesChanged" and message.interface == sd.MANAGER:
        return ""
    return None


def systemd_session(address: str, changed: Changed, declared: Callable[[], set[str]]) -> Session:
    def on_message(message: Message) -> None:
        unit = unit_of_signal(message)
        if unit == "" or (unit is not None and unit in declared()):
            changed(f"systemd {message.member} {unit}".rstrip())

    async def session(connected: Callable[[], None]) -> None:
        bus = await connect_system_bus(address, auth_timeout=5.0)
        try:
            bus.add_message_handler(on_message)
            for rule in RULES:
                await add_match(bus, rule)
            await call(bus, sd.SERVICE, sd.PATH, sd.MANAGER, "Subscribe")
            connected()
            await bus.wait_for_disconnect()
        finally:
            bus.disconnect()

    return session


def watches(ctx: WatchContext) -> list[Watch]:
    address = ctx.endpoints.system_bus

    def declared() -> set[str]:
        return set(ctx.desired().get("units", {}))

    return [
        Watch(
            f"systemd {address}", lambda changed: systemd_session(address, changed, declared), True
        )
    ]
