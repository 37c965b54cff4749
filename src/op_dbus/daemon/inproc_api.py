"""The API over this daemon, for front ends it serves in its own process (MCP over HTTP).

What `DaemonApi` asks over D-Bus, asked directly: the same daemon methods, so a change made
this way is enforced, recorded and listed exactly like one through org.opdbus, and reads
come from the daemon's cache.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from op_dbus.api.daemon import document, narrow
from op_dbus.daemon.dbus_api import Backend
from op_dbus.engine.apply import Progress
from op_dbus.engine.options import ApplyOptions
from op_dbus.plugins.base import Section

if TYPE_CHECKING:
    from op_dbus.daemon.service import Daemon


class InProcessApi:
    via = "daemon"

    def __init__(self, daemon: Backend) -> None:
        self.daemon = daemon

    async def query(self, names: Iterable[str]) -> dict[str, Any]:
        return narrow(await self.daemon.query_state(), names)

    async def plan(self, sections: dict[str, Section], *, prune: bool = False) -> dict[str, Any]:
        return await self.daemon.diff(document(sections), prune=prune)

    async def apply(
        self,
        sections: dict[str, Section],
        options: ApplyOptions,
        *,
        progress: Progress | None = None,
        on_plan: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        reply = await self._apply(sections, options)
        if on_plan is not None:
            on_plan(reply["plan"])
        return reply

    async def _apply(self, sections: dict[str, Section], options: ApplyOptions) -> dict[str, Any]:
        return await self.daemon.apply_state(document(sections), options)

    async def confirm(self, *, actor: str) -> dict[str, Any]:
        return await self.daemon.confirm(actor)

    async def rollback(self, *, actor: str) -> dict[str, Any]:
        return await self.daemon.rollback(actor)

    async def verify(self, sections: dict[str, Section]) -> dict[str, Any]:
        return await self.daemon.verify(document(sections))

    async def status(self) -> dict[str, Any]:
        return self.daemon.status()

    async def close(self) -> None:
        """Nothing to release: the daemon owns its Host."""


class FleetApi(InProcessApi):
    """The API the fleet agent drives: a change replaces the fleet's previous desired state
    instead of adding a runtime change on top of it (`Daemon.apply_fleet`)."""

    def __init__(self, daemon: Daemon) -> None:
        super().__init__(daemon)
        self.fleet_daemon = daemon

    async def _apply(self, sections: dict[str, Section], options: ApplyOptions) -> dict[str, Any]:
        """The fleet's state is authoritative, like the daemon's state file: it is applied
        pruned, its dangerous actions accepted and probed (so `prune`/`acknowledge` are the
        daemon's, not the caller's to choose)."""
        return await self.fleet_daemon.apply_fleet(sections, options.actor, options.confirm_within)
