"""The API through a running daemon: org.opdbus on the system bus.

The daemon runs the same engine Host; this side only encodes requests and decodes replies,
and turns the daemon's D-Bus errors back into the error kinds the local API raises.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from dbus_fast.errors import DBusError

from op_dbus.engine.apply import Progress
from op_dbus.engine.options import ApplyOptions
from op_dbus.errors import from_dbus
from op_dbus.native.dbus import call, connect_system_bus, name_has_owner
from op_dbus.plugins.base import Section

if TYPE_CHECKING:
    from dbus_fast.aio import MessageBus

NAME = "org.opdbus"
PATH = "/org/opdbus/state"
INTERFACE = "org.opdbus.StateManager"


def document(sections: dict[str, Section]) -> str:
    """Sections as the state document the daemon's methods take."""
    return json.dumps({"version": 1, "plugins": sections})


def narrow(reply: dict[str, Any], names: Iterable[str]) -> dict[str, Any]:
    """The daemon's whole cached state narrowed to the sections `names`."""
    wanted = set(names)
    return {
        "state": {
            "version": 1,
            "plugins": {n: s for n, s in reply["state"]["plugins"].items() if n in wanted},
        },
        "skipped": {n: why for n, why in reply["skipped"].items() if n in wanted},
    }


class DaemonApi:
    via = "daemon"

    def __init__(self, bus: MessageBus) -> None:
        self.bus = bus

    @classmethod
    async def connect(cls, address: str) -> DaemonApi | None:
        """The daemon's API, or None when no bus or no daemon answers at `address`."""
        try:
            bus = await connect_system_bus(address, auth_timeout=2.0)
        except Exception:
            return None
        try:
            if await name_has_owner(bus, NAME):
                return cls(bus)
        except Exception:
            pass
        bus.disconnect()
        return None

    async def _call(self, member: str, signature: str = "", body: list[Any] | None = None) -> Any:
        try:
            (reply,) = await call(self.bus, NAME, PATH, INTERFACE, member, signature, body)
        except DBusError as exc:
            raise from_dbus(exc.type, exc.text) from None
        return json.loads(reply) if isinstance(reply, str) else reply

    async def query(self, names: Iterable[str]) -> dict[str, Any]:
        return narrow(await self._call("QueryState"), names)

    async def plan(self, sections: dict[str, Section], *, prune: bool = False) -> dict[str, Any]:
        if not prune:
            return await self._call("Diff", "s", [document(sections)])
        return await self._call("Plan", "ss", [document(sections), json.dumps({"prune": True})])

    async def apply(
        self,
        sections: dict[str, Section],
        options: ApplyOptions,
        *,
        progress: Progress | None = None,
        on_plan: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """The daemon applies with its own mode (`options.mode` is not sent)."""
        text = json.dumps(options.to_json())
        reply = await self._call("Apply", "ss", [document(sections), text])
        if on_plan is not None:
            on_plan(reply["plan"])
        return reply

    async def confirm(self, *, actor: str) -> dict[str, Any]:
        return await self._call("ConfirmTryWith", "s", [json.dumps({"actor": actor})])

    async def rollback(self, *, actor: str) -> dict[str, Any]:
        return await self._call("RollbackWith", "s", [json.dumps({"actor": actor})])

    async def verify(self, sections: dict[str, Section]) -> dict[str, Any]:
        return await self._call("VerifyState", "s", [document(sections)])

    async def status(self) -> dict[str, Any]:
        return await self._call("Status")

    async def reload(self) -> dict[str, Any]:
        return await self._call("Reload")

    async def close(self) -> None:
        self.bus.disconnect()
