"""The API without a daemon: the engine's Host, in this process."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from op_dbus.endpoints import Endpoints
from op_dbus.engine.apply import Progress
from op_dbus.engine.host import Host
from op_dbus.engine.lock import DEFAULT_WAIT, read_holder
from op_dbus.engine.plan import Acknowledge
from op_dbus.engine.probe import parse_targets
from op_dbus.plugins.base import Section


class LocalApi:
    via = "local"

    def __init__(
        self,
        endpoints: Endpoints,
        names: Iterable[str],
        *,
        use_ledger: bool,
        lock_wait: float = DEFAULT_WAIT,
    ) -> None:
        self.endpoints = endpoints
        self.host = Host(endpoints, names, use_ledger=use_ledger, lock_wait=lock_wait)

    async def query(self, names: Iterable[str]) -> dict[str, Any]:
        sections, skipped = await self.host.read(names)
        return {"state": {"version": 1, "plugins": sections}, "skipped": skipped}

    async def plan(self, sections: dict[str, Section], *, prune: bool = False) -> dict[str, Any]:
        return (await self.host.plan(sections, prune=prune)).to_json()

    async def apply(
        self,
        sections: dict[str, Section],
        *,
        actor: str,
        mode: str,
        confirm_within: int | None = None,
        progress: Progress | None = None,
        on_plan: Callable[[dict[str, Any]], None] | None = None,
        expect_revision: str | None = None,
        prune: bool = False,
        acknowledge: Acknowledge = (),
        probes: Sequence[str] = (),
    ) -> dict[str, Any]:
        change = await self.host.apply(
            sections,
            actor=actor,
            mode=mode,
            progress=progress,
            confirm_within=confirm_within,
            on_plan=None if on_plan is None else lambda plan: on_plan(plan.to_json()),
            expect_revision=expect_revision,
            prune=prune,
            acknowledge=acknowledge,
            probes=parse_targets(probes),
        )
        pending = self.host.pending
        return change.to_json() | {"try": pending.to_json() if pending else None}

    async def wait_for_try(self) -> None:
        """Until the pending try ends (confirmed, or rolled back by its timer)."""
        await self.host.try_ended.wait()

    async def confirm(self, *, actor: str) -> dict[str, Any]:
        return {"confirmed": self.host.confirm(actor=actor).to_json()}

    async def rollback(self, *, actor: str) -> dict[str, Any]:
        change = await self.host.rollback(actor=actor, why="rolled back on request")
        return change.to_json()

    def try_outcome(self) -> dict[str, Any] | None:
        """How the last try ended when its timer rolled it back (None: not that way)."""
        outcome = self.host.last_try_outcome
        return outcome.to_json() if outcome is not None else None

    async def verify(self, sections: dict[str, Section]) -> dict[str, Any]:
        return (await self.host.verify(sections)).to_json()

    async def status(self) -> dict[str, Any]:
        return {
            "daemon": None,
            "lock_holder": read_holder(self.endpoints.data_dir),
            "data_dir": self.endpoints.data_dir,
        }

    async def close(self) -> None:
        await self.host.close()
