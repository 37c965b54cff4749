"""org.freedesktop.systemd1 over dbus-fast: read units in bulk, change unit files, run jobs.

Reads use the Manager's list calls (one round trip for all units, not one per unit). Jobs
are awaited through their `JobRemoved` signal: `JobWatcher` subscribes before any job is
queued, so a job that finishes before its StartUnit reply is read is not missed.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from types import TracebackType

from dbus_fast import Message, MessageType
from dbus_fast.aio import MessageBus
from dbus_fast.errors import DBusError

from op_dbus.native.dbus import add_match, call, remove_match

SERVICE = "org.freedesktop.systemd1"
PATH = "/org/freedesktop/systemd1"
MANAGER = "org.freedesktop.systemd1.Manager"
JOB = "org.freedesktop.systemd1.Job"
NO_SUCH_JOB = "org.freedesktop.systemd1.NoSuchJob"
UNKNOWN_OBJECT = "org.freedesktop.DBus.Error.UnknownObject"
ALREADY_SUBSCRIBED = "org.freedesktop.systemd1.AlreadySubscribed"
JOB_REMOVED_RULE = (
    f"type='signal',sender='{SERVICE}',path='{PATH}',interface='{MANAGER}',member='JobRemoved'"
)


@dataclass(frozen=True)
class UnitStatus:
    """One loaded unit as ListUnits/ListUnitsByNames reports it."""

    name: str
    load_state: str
    active_state: str
    sub_state: str


async def _manager(bus: MessageBus, member: str, signature: str = "", *body: object) -> list:
    return await call(bus, SERVICE, PATH, MANAGER, member, signature, list(body))


async def list_unit_files(bus: MessageBus) -> dict[str, str]:
    """Unit name -> unit file state (enabled, static, masked, ...) of every unit file."""
    (files,) = await _manager(bus, "ListUnitFiles")
    return {os.path.basename(path): state for path, state in files}


async def unit_files_named(bus: MessageBus, names: list[str]) -> dict[str, str]:
    """Like `list_unit_files`, for these units only (much cheaper: systemd filters first)."""
    (files,) = await _manager(bus, "ListUnitFilesByPatterns", "asas", [], names)
    return {os.path.basename(path): state for path, state in files}


def _statuses(rows: list) -> dict[str, UnitStatus]:
    return {row[0]: UnitStatus(row[0], row[2], row[3], row[4]) for row in rows}


async def list_units(bus: MessageBus) -> dict[str, UnitStatus]:
    """Every unit systemd has loaded, with its load, active and sub state."""
    (rows,) = await _manager(bus, "ListUnits")
    return _statuses(rows)


async def list_units_by_names(bus: MessageBus, names: list[str]) -> dict[str, UnitStatus]:
    """These units, loaded first if needed (LoadState `not-found` when no such unit exists)."""
    (rows,) = await _manager(bus, "ListUnitsByNames", "as", names)
    return _statuses(rows)


async def enable(bus: MessageBus, names: list[str], *, runtime: bool = False) -> None:
    await _manager(bus, "EnableUnitFiles", "asbb", names, runtime, False)


async def disable(bus: MessageBus, names: list[str], *, runtime: bool = False) -> None:
    await _manager(bus, "DisableUnitFiles", "asb", names, runtime)


async def mask(bus: MessageBus, names: list[str], *, runtime: bool = False) -> None:
    await _manager(bus, "MaskUnitFiles", "asbb", names, runtime, False)


async def unmask(bus: MessageBus, names: list[str], *, runtime: bool = False) -> None:
    await _manager(bus, "UnmaskUnitFiles", "asb", names, runtime)


async def reload(bus: MessageBus) -> None:
    """Daemon-reload; the reply comes once systemd has re-read its unit files."""
    await _manager(bus, "Reload")


async def _subscribe(bus: MessageBus) -> bool:
    """Subscribe to the Manager's signals; False when this connection already was (then
    unsubscribing is left to whoever subscribed)."""
    try:
        await _manager(bus, "Subscribe")
    except DBusError as exc:
        if exc.type != ALREADY_SUBSCRIBED:
            raise
        return False
    return True


class JobWatcher:
    """Collects `JobRemoved` results while open; open it before queueing jobs.

    `async with JobWatcher(bus) as jobs: path = await jobs.start(unit); await jobs.wait(...)`.
    """

    def __init__(self, bus: MessageBus) -> None:
        self._bus = bus
        self._results: dict[str, str] = {}
        self._waiters: dict[str, asyncio.Future[str]] = {}
        self._matched = False
        self._subscribed = False

    async def __aenter__(self) -> JobWatcher:
        """Handler, match rule, Subscribe; a failure halfway undoes the steps taken (the bus
        is the plugin's, kept open: nothing may stay behind on it)."""
        self._bus.add_message_handler(self._on_message)
        try:
            await add_match(self._bus, JOB_REMOVED_RULE)
            self._matched = True
            self._subscribed = await _subscribe(self._bus)
        except BaseException:
            await self.__aexit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._bus.remove_message_handler(self._on_message)
        if self._bus.connected:
            if self._matched:
                await remove_match(self._bus, JOB_REMOVED_RULE)
            if self._subscribed:
                await _manager(self._bus, "Unsubscribe")

    def _on_message(self, message: Message) -> None:
        if (
            message.message_type == MessageType.SIGNAL
            and message.member == "JobRemoved"
            and message.interface == MANAGER
        ):
            _id, job, _unit, result = message.body
            waiter = self._waiters.pop(job, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(result)
            else:
                self._results[job] = result

    async def start(self, unit: str) -> str:
        """Queue a start job (mode replace); returns the job's object path."""
        (job,) = await _manager(self._bus, "StartUnit", "ss", unit, "replace")
        return job

    async def stop(self, unit: str) -> str:
        (job,) = await _manager(self._bus, "StopUnit", "ss", unit, "replace")
        return job

    async def cancel(self, job: str) -> None:
        """Cancel a queued or running job; a job that is gone already is fine.

        The unit stays where the job left it (a start cancelled midway stays `activating`).
        """
        try:
            await call(self._bus, SERVICE, job, JOB, "Cancel")
        except DBusError as exc:
            if exc.type != NO_SUCH_JOB and exc.type != UNKNOWN_OBJECT:
                raise

    async def wait(self, job: str, timeout: float) -> str:
        """The job's result (done, failed, timeout, dependency, canceled, skipped, ...).

        Raises TimeoutError when no JobRemoved arrives within `timeout` seconds.
        """
        if job in self._results:
            return self._results.pop(job)
        waiter = asyncio.get_running_loop().create_future()
        self._waiters[job] = waiter
        try:
            return await asyncio.wait_for(waiter, timeout)
        finally:
            self._waiters.pop(job, None)
