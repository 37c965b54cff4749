"""The API without a daemon: the engine's Host, in this process.

A try made here is written to the data dir and its timer handed to a detached try keeper
(engine/keeper.py), so it outlives this process; `confirm` and `rollback` here act on the
journal, so they work from any shell.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from op_dbus.endpoints import Endpoints
from op_dbus.engine.apply import Progress
from op_dbus.engine.host import Host
from op_dbus.engine.journal import Journal, JournalError
from op_dbus.engine.keeper import start_keeper
from op_dbus.engine.lock import DEFAULT_WAIT, read_holder
from op_dbus.engine.options import ApplyOptions
from op_dbus.errors import NothingPending
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
        catch_signals: bool = False,
    ) -> None:
        self.endpoints = endpoints
        self.use_ledger = use_ledger
        self.host = Host(
            endpoints,
            names,
            use_ledger=use_ledger,
            lock_wait=lock_wait,
            keeps_timer=False,
            catch_signals=catch_signals,
        )
        self.try_id: str | None = None

    async def query(self, names: Iterable[str]) -> dict[str, Any]:
        sections, skipped = await self.host.read(names)
        return {"state": {"version": 1, "plugins": sections}, "skipped": skipped}

    async def plan(self, sections: dict[str, Section], *, prune: bool = False) -> dict[str, Any]:
        return (await self.host.plan(sections, prune=prune)).to_json()

    async def apply(
        self,
        sections: dict[str, Section],
        options: ApplyOptions,
        *,
        progress: Progress | None = None,
        on_plan: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        change = await self.host.apply(
            sections,
            options,
            progress=progress,
            on_plan=None if on_plan is None else lambda plan: on_plan(plan.to_json()),
        )
        pending = self.host.pending
        if pending is not None:
            self.try_id = pending.apply_id
            start_keeper(self.endpoints, pending.apply_id, use_ledger=self.use_ledger)
        return change.to_json() | {"try": pending.to_json() if pending else None}

    async def wait_for_try(self) -> None:
        """Until this API's try ends (confirmed elsewhere, or rolled back by its keeper)."""
        import asyncio

        journal = Journal(self.endpoints.data_dir)
        while self.try_id is not None:
            try:
                if journal.get(self.try_id) is None:
                    return
            except (OSError, JournalError):
                pass  # a file being renamed under us: look again
            await asyncio.sleep(0.2)

    async def confirm(self, *, actor: str) -> dict[str, Any]:
        return {"confirmed": self.host.confirm(actor=actor).to_json()}

    async def rollback(self, *, actor: str) -> dict[str, Any]:
        try:
            change = await self.host.rollback(actor=actor, why="rolled back on request")
        except NothingPending:
            outcome = self.try_outcome()  # our try, ended by its keeper meanwhile
            if outcome is None:
                raise
            return outcome
        return change.to_json()

    def try_outcome(self) -> dict[str, Any] | None:
        """How this API's try ended elsewhere, from the ledger: its rollback's result, or
        None (confirmed, or no ledger to say)."""
        if self.try_id is None or not self.use_ledger:
            return None
        from op_dbus.ledger.store import Ledger, LedgerError

        try:
            with Ledger.open(self.endpoints.data_dir, readonly=True) as ledger:
                size = ledger.size()
                recent = [e.value for e in ledger.entries(max(0, size - 500), size)]
        except (OSError, LedgerError):
            return None
        for value in reversed(recent):
            if value.get("type") == "apply" and value.get("recovers") == self.try_id:
                return {"result": value["result"]}
        return None

    async def verify(self, sections: dict[str, Section]) -> dict[str, Any]:
        return (await self.host.verify(sections)).to_json()

    async def status(self) -> dict[str, Any]:
        return {
            "daemon": None,
            "lock_holder": read_holder(self.endpoints.data_dir),
            "data_dir": self.endpoints.data_dir,
            "in_flight": in_flight(self.endpoints.data_dir),
        }

    async def close(self) -> None:
        await self.host.close()


def in_flight(data_dir: str) -> list[dict[str, Any]]:
    """The journal as `status` shows it: each change in flight, and whether it is an apply
    that was interrupted (journalled as applying, and its process holds no apply lock)."""
    holder = read_holder(data_dir)
    try:
        changes = Journal(data_dir).all()
    except (OSError, JournalError) as err:
        return [{"error": str(err)}]
    shown = []
    for change in changes:
        alive = holder is not None and holder.get("pid") == change.pid
        item = change.to_json()
        item["interrupted"] = change.state in ("applying", "rollback") and not alive
        shown.append(item)
    return shown
