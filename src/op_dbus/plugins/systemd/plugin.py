"""The systemd section: each declared unit's enablement, mask and active state.

`query()` reads every unit systemd knows (its unit files and its loaded units: two calls), so
the checkpoint holds every unit a rollback may need; `diff` only looks at declared units.
What `enabled` means for each unit file state is decided in `ENABLED_STATES`/`FIXED_STATES`
and documented in docs/systemd.md.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar

from dbus_fast.aio import MessageBus
from dbus_fast.errors import DBusError

from op_dbus.errors import describe_error
from op_dbus.native import systemd as sd
from op_dbus.native.dbus import connect_system_bus, name_has_owner
from op_dbus.plugins.base import (
    Action,
    ActionKind,
    ApplyError,
    Availability,
    Mismatch,
    Plugin,
    Section,
    Steps,
    report,
)

log = logging.getLogger(__name__)

ENABLED_STATES = frozenset(
    {"enabled", "enabled-runtime", "static", "indirect", "generated", "alias", "transient"}
)
"""Unit file states that count as `enabled: true`: those `systemctl is-enabled` accepts."""
FIXED_STATES = frozenset({"static", "indirect", "generated", "alias", "transient"})
"""States whose enablement is not the unit's own to change: `enabled` is reported, not applied."""
MASKED_STATES = frozenset({"masked", "masked-runtime"})
RUNNING_STATES = frozenset({"active", "reloading", "activating", "deactivating"})
"""ActiveStates reported as `active`: the unit is up or on its way (only inactive and failed
are `inactive`), so a start cut short by a timeout is stopped by the rollback."""
FIELDS = ("masked", "enabled", "active_state")


def unit_entry(file_state: str, status: sd.UnitStatus | None) -> dict[str, Any]:
    """One unit in the state file's shape, plus the raw states it was derived from."""
    entry: dict[str, Any] = {
        "enabled": file_state in ENABLED_STATES,
        "active_state": "active"
        if status is not None and status.active_state in RUNNING_STATES
        else "inactive",
        "masked": file_state in MASKED_STATES
        or (status is not None and status.load_state == "masked"),
        "unit_file_state": file_state,
    }
    if status is not None:
        entry |= {"load_state": status.load_state, "sub_state": status.sub_state}
    return entry


def build_section(files: dict[str, str], loaded: dict[str, sd.UnitStatus]) -> Section:
    """The section from ListUnitFiles and ListUnits; units that do not exist are left out, and
    so are templates (`getty@.service`), which are no units until instantiated."""
    names = set(files) | {n for n, s in loaded.items() if s.load_state != "not-found"}
    names = {n for n in names if "@." not in n}
    return {"units": {n: unit_entry(files.get(n, ""), loaded.get(n)) for n in sorted(names)}}


def _fixed_state(current: dict[str, Any] | None, wanted: dict[str, Any]) -> str:
    """The unit file state that pins this unit's enablement, or "" when op-dbus may change it."""
    for state in ((current or {}).get("unit_file_state"), wanted.get("unit_file_state")):
        if state in FIXED_STATES:
            return state
    return ""


def _changes(
    name: str, current: dict[str, Any] | None, wanted: dict[str, Any], *, report: bool = True
) -> dict[str, Any]:
    """The declared fields of one unit that differ from the host and that op-dbus can change.

    A request to change a fixed enablement is skipped, and logged as a warning if `report`.
    """
    changes = {}
    for key in FIELDS:
        value = wanted.get(key)
        if value is None or (current is not None and current.get(key) == value):
            continue
        if key == "enabled" and (fixed := _fixed_state(current, wanted)):
            if report:
                log.warning(
                    "systemd: %s is %s, its enablement cannot be changed; enabled: %s not applied",
                    name,
                    fixed,
                    str(value).lower(),
                )
            continue
        changes[key] = value
    return changes


def diff_units(current: Section, desired: Section, *, exhaustive: bool = False) -> list[Action]:
    """One MODIFY action per declared unit that differs, in declaration order.

    With `exhaustive`, `desired` is a checkpoint: units it lists that no longer exist are
    skipped (op-dbus never creates or deletes units). A `-runtime` unit file state rides
    along in before/after, so a runtime enablement or mask is undone or restored in /run.
    """
    have = current.get("units", {})
    actions = []
    for name, wanted in desired.get("units", {}).items():
        now = have.get(name)
        if exhaustive and now is None:
            continue
        after = _changes(name, now, wanted, report=not exhaustive)
        if not after:
            continue
        files = "enabled" in after or "masked" in after
        if files and exhaustive and _is_runtime(wanted):
            after["unit_file_state"] = wanted["unit_file_state"]
        before = None
        if now is not None:
            before = {key: now[key] for key in FIELDS if key in after}
            if files and _is_runtime(now):
                before["unit_file_state"] = now["unit_file_state"]
        actions.append(Action("systemd", ActionKind.MODIFY, name, before, after))
    return actions


def mismatches(current: Section, desired: Section) -> list[Mismatch]:
    """Every declared field the host does not have (fixed enablement is not a mismatch)."""
    have = current.get("units", {})
    found = []
    for name, wanted in desired.get("units", {}).items():
        now = have.get(name)
        if now is None:
            found.append(Mismatch(name, "load_state", "loaded", "not-found"))
            continue
        for key, value in _changes(name, now, wanted, report=False).items():
            found.append(Mismatch(name, key, value, now.get(key)))
    return found


def _is_runtime(unit: dict[str, Any]) -> bool:
    return str(unit.get("unit_file_state", "")).endswith("-runtime")


def _runtime(action: Action, key: str) -> bool:
    """Whether the file change for `key` targets /run: the state it restores or undoes is."""
    return _is_runtime(action.after if action.after[key] else action.before or {})


@dataclass
class SystemdPlugin(Plugin):
    """Units over org.freedesktop.systemd1 on `endpoints.system_bus`."""

    name: ClassVar[str] = "systemd"
    job_timeout: float = 60.0
    _bus: MessageBus | None = field(default=None, init=False, repr=False)

    async def _connect(self) -> MessageBus:
        if self._bus is None or not self._bus.connected:
            self._bus = await connect_system_bus(self.endpoints.system_bus, auth_timeout=5.0)
        return self._bus

    async def available(self) -> Availability:
        try:
            bus = await self._connect()
            if not await name_has_owner(bus, sd.SERVICE):
                return Availability(False, f"no systemd on {self.endpoints.system_bus}")
        except Exception as exc:
            return Availability(
                False, f"system bus {self.endpoints.system_bus}: {describe_error(exc)}"
            )
        return Availability(True)

    async def query(self, scope: Section | None = None) -> Section:
        """Every unit systemd knows; or, given a scope, only the units it names (systemd's
        ListUnitFiles costs ~0.7 ms per unit file on its side, the scoped calls about 1 ms)."""
        units = None if scope is None else list(scope.get("units", {}))
        bus = await self._connect()
        if units is None:
            files, loaded = await asyncio.gather(sd.list_unit_files(bus), sd.list_units(bus))
        else:
            files, loaded = await asyncio.gather(
                sd.unit_files_named(bus, units), sd.list_units_by_names(bus, units)
            )
        return build_section(files, loaded)

    def reads_all(self, scope: Section | None) -> bool:
        return scope is None

    def diff(
        self, current: Section, desired: Section, *, exhaustive: bool = False, prune: bool = False
    ) -> list[Action]:
        return diff_units(current, desired, exhaustive=exhaustive)

    async def verify(self, desired: Section) -> list[Mismatch]:
        return mismatches(await self.query(desired), desired)

    async def apply(self, actions: list[Action], steps: Steps | None = None) -> list[Action]:
        """Unit files first (unmask, enable/disable, mask), one Reload, then start/stop jobs.

        On failure, `done` holds every other action that changed something: its unit files,
        or its job."""
        if not actions:
            return []
        bus = await self._connect()
        loaded = await sd.list_units_by_names(bus, [a.resource for a in actions])
        for action in actions:
            status = loaded.get(action.resource)
            if status is None or status.load_state == "not-found":
                raise ApplyError(
                    action, f"unit {action.resource} does not exist (LoadState not-found)"
                )

        done: list[Action] = []
        report(steps, actions, False)
        for action in actions:
            try:
                if await self._change_files(bus, action):
                    done.append(action)
            except DBusError as exc:
                raise ApplyError(action, f"{action.resource}: {exc.text}", done) from None
        if done:
            await sd.reload(bus)
        jobs_to_run = [a for a in actions if "active_state" in a.after]
        report(steps, [a for a in done if a not in jobs_to_run], True)
        if jobs_to_run:
            async with sd.JobWatcher(bus) as jobs:
                for action in jobs_to_run:
                    if (failure := await self._job_failure(jobs, action)) is not None:
                        raise ApplyError(action, failure, [a for a in done if a is not action])
                    if action not in done:
                        done.append(action)
                    report(steps, [action], True)
        return actions

    async def _change_files(self, bus: MessageBus, action: Action) -> bool:
        """Apply the action's unit file changes; whether it had any."""
        names, after = [action.resource], action.after
        if after.get("masked") is False:
            await sd.unmask(bus, names, runtime=_runtime(action, "masked"))
        if "enabled" in after:
            if after["enabled"]:
                await sd.enable(bus, names, runtime=_runtime(action, "enabled"))
            else:
                await sd.disable(bus, names, runtime=_runtime(action, "enabled"))
        if after.get("masked") is True:
            await sd.mask(bus, names, runtime=_runtime(action, "masked"))
        return "masked" in after or "enabled" in after

    async def _job_failure(self, jobs: sd.JobWatcher, action: Action) -> str | None:
        """Run the action's start or stop job; why it failed, or None when it is done."""
        unit, verb = (
            action.resource,
            ("start" if action.after["active_state"] == "active" else "stop"),
        )
        try:
            job = await (jobs.start(unit) if verb == "start" else jobs.stop(unit))
        except DBusError as exc:
            return f"{unit}: {verb} refused: {exc.text}"
        try:
            result = await jobs.wait(job, self.job_timeout)
        except TimeoutError:
            await jobs.cancel(job)  # no late change after the failure is reported
            return f"{unit}: {verb} job did not finish within {self.job_timeout:g} s"
        if result != "done":
            return f"{unit}: {verb} job finished with result '{result}'"
        return None

    async def close(self) -> None:
        if self._bus is not None:
            self._bus.disconnect()
            self._bus = None
