"""The daemon's model of the host: desired state, cached current state, and what to do on drift.

Every use of the plugins goes through one lock, so an intentional apply, a drift repair and a
D-Bus `Diff` never interleave on a backend. Drift is any pending action for a declared section
found after an event: under `enforce` it is repaired (recorded in the ledger as a corrective
apply, actor `op-dbus-daemon:corrective`), under `observe` it is reported and recorded only.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from op_dbus.daemon.backoff import DriftBackoff
from op_dbus.daemon.restore import restore_checkpoints
from op_dbus.endpoints import Endpoints
from op_dbus.engine.apply import ApplyResult, apply_plan
from op_dbus.engine.inventory import read_section
from op_dbus.engine.plan import Plan, describe_error, make_plan
from op_dbus.engine.verify import verify_state
from op_dbus.exitcodes import ExitCode
from op_dbus.ledger.entries import now_text
from op_dbus.model.modes import SECTIONS_BY_MODE, Mode
from op_dbus.plugins import make_plugin
from op_dbus.plugins.base import Action, Plugin, Section

log = logging.getLogger("op_dbus.daemon")

ACTOR = "op-dbus-daemon"


class Policy(StrEnum):
    ENFORCE = "enforce"
    OBSERVE = "observe"


Listener = Callable[[str, dict[str, Any]], None]
"""Told of "drift" and "applied" reports (the D-Bus signals, the systemd status line)."""


def plan_json(plan: Plan) -> dict[str, Any]:
    return {
        "pending": plan.pending,
        "plugins": [p.to_json() for p in plan.plugins],
    }


@dataclass
class Reconciler:
    """Holds the plugins (one per section the mode allows) for the daemon's lifetime."""

    endpoints: Endpoints
    mode: Mode
    policy: Policy
    use_ledger: bool = True
    use_cache: bool = True
    """False (`run --no-cache`): every cached_state() reads every section from the host."""
    listeners: list[Listener] = field(default_factory=list)
    backoff: DriftBackoff = field(default_factory=DriftBackoff)
    desired: dict[str, Section] = field(default_factory=dict)
    cache: dict[str, Section] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    stale: set[str] = field(init=False)
    """Sections whose cache is outdated (at first every one; then those an event or an apply
    touched): re-read when the cache is next asked for, so nobody waits for unasked reads."""
    drift_events: int = 0
    last_apply: dict[str, Any] = field(default_factory=dict)
    retry_after: float | None = None
    """Seconds after which the caller should check again (a held resource's hold ends)."""

    def __post_init__(self) -> None:
        self.lock = asyncio.Lock()
        self.plugins: dict[str, Plugin | None] = {
            name: make_plugin(name, self.endpoints) for name in self.names
        }
        self.stale = set(self.names)

    @property
    def names(self) -> tuple[str, ...]:
        return SECTIONS_BY_MODE[self.mode]

    async def close(self) -> None:
        for plugin in self.plugins.values():
            if plugin is not None:
                await plugin.close()

    def _emit(self, kind: str, report: dict[str, Any]) -> None:
        for listener in self.listeners:
            try:
                listener(kind, report)
            except Exception:  # a listener's failure must not stop reconciling
                log.exception("listener failed on %s", kind)

    async def _renew(self, name: str) -> None:
        """A fresh plugin after its backend failed: the next use connects anew."""
        old = self.plugins.get(name)
        if old is not None:
            try:
                await old.close()
            except Exception as exc:
                log.debug("closing %s plugin: %s", name, describe_error(exc))
        self.plugins[name] = make_plugin(name, self.endpoints)

    # -- reading ---------------------------------------------------------------------------
    async def _refresh(self, names: set[str]) -> None:
        """Read these sections in full into the cache (or note why they cannot be read)."""
        wanted = [n for n in self.names if n in names]
        results = await asyncio.gather(*(self._query(n) for n in wanted))
        for name, (section, reason) in zip(wanted, results, strict=True):
            if section is None:
                self._unreadable(name, reason)
            else:
                self._cached(name, section)

    def _cached(self, name: str, section: Section) -> None:
        self.cache[name] = section
        self.skipped.pop(name, None)
        self.stale.discard(name)

    def _unreadable(self, name: str, reason: str) -> None:
        self.cache.pop(name, None)
        self.skipped[name] = reason
        self.stale.discard(name)

    async def _query(self, name: str) -> tuple[Section | None, str]:
        plugin = self.plugins.get(name)
        section, reason = await read_section(plugin)
        if section is None and plugin is not None:
            await self._renew(name)
        return section, reason

    async def cached_state(self) -> dict[str, Any]:
        """What `op-dbus query --json` prints, from the cache (stale sections read first)."""
        if not self.use_cache:
            self.stale = set(self.names)
        if self.stale:
            async with self.lock:
                await self._refresh(set(self.stale))
        return {"state": {"version": 1, "plugins": dict(self.cache)}, "skipped": dict(self.skipped)}

    async def diff(self, desired: dict[str, Section]) -> Plan:
        async with self.lock:
            return await self._plan(desired)

    async def _plan(self, desired: dict[str, Section]) -> Plan:
        """Plan `desired`; a section that could not be read is skipped in the cache, as why."""
        plan = await make_plan(desired, self.plugins)
        for entry in plan.blocked:
            if entry.status == "refused":  # the file's fault: the section reads fine
                continue
            self._unreadable(entry.name, entry.reason)
            await self._renew(entry.name)
        return plan

    async def verify(self) -> dict[str, Any]:
        """Mismatches of the host against the desired state (one attempt, no waiting)."""
        async with self.lock:
            found = await verify_state(self.desired, self.plugins, attempts=1, delay=0)
        return {"mismatches": {name: [m.to_json() for m in items] for name, items in found.items()}}

    # -- changing --------------------------------------------------------------------------
    async def apply_desired(
        self, desired: dict[str, Section], *, mode: str, actor: str
    ) -> tuple[Plan, ApplyResult]:
        """An intentional change: `desired` becomes what the daemon enforces, then is applied.
        Returns the plan too: its `current` of the touched sections is the checkpoint.

        A resource held by backoff is forgiven: the admin asked for it explicitly.
        """
        async with self.lock:
            self.desired = dict(desired)
            plan = await self._plan(self.desired)
            result = await self._apply(plan, mode=mode, actor=actor)
            self.backoff.clear()
            return plan, result

    async def _apply(self, plan: Plan, *, mode: str, actor: str) -> ApplyResult:
        started = time.monotonic()
        result = await apply_plan(plan, self.plugins)
        touched = {entry.name for entry in plan.plugins if entry.actions}
        return self._finish(plan, result, touched, mode=mode, actor=actor, started=started)

    def _finish(
        self,
        plan: Plan,
        result: ApplyResult,
        touched: set[str],
        *,
        mode: str,
        actor: str,
        started: float,
    ) -> ApplyResult:
        """Record the apply, mark the sections it touched stale, and tell the listeners.

        Only `touched` sections can have changed; they are re-read when the cache is next
        asked for, which spares an apply (and a no-op re-apply) reads nobody asked for."""
        self.last_apply = {
            "time": now_text(),
            "actor": actor,
            "exit_code": int(result.exit_code),
            "message": result.message,
            "actions": len(result.applied),
            "seconds": round(time.monotonic() - started, 4),
        }
        level = logging.INFO if result.exit_code == ExitCode.OK else logging.ERROR
        log.log(level, "%s: %s", actor, result.message)
        if self.use_ledger and plan.pending and not plan.blocked:
            self._record(plan, result, mode, actor)
        self.stale |= touched
        self._emit("applied", dict(self.last_apply))
        return result

    def _record(self, plan: Plan, result: ApplyResult, mode: str, actor: str) -> None:
        from op_dbus.engine.record import record_apply
        from op_dbus.ledger.store import Ledger

        try:
            with Ledger.open(self.endpoints.data_dir) as ledger:
                record_apply(
                    ledger, plan=plan, result=result, desired=self.desired, mode=mode, actor=actor
                )
        except Exception as exc:  # the host changed; losing the record is loud, not fatal
            log.error("ledger in %s could not record: %s", self.endpoints.data_dir, exc)

    def _record_drift(self, report: dict[str, Any]) -> None:
        """One ledger entry per drifted action (observe): what differed, as digests."""
        import uuid

        from op_dbus.ledger.entries import digest
        from op_dbus.ledger.store import Ledger

        base = {
            "type": "drift",
            "drift_id": uuid.uuid4().hex,
            "time": report["time"],
            "actor": f"{ACTOR}:observe",
            "policy": str(self.policy),
            "result": "reported, not repaired (observe)",
        }
        entries = [
            base
            | {k: a[k] for k in ("plugin", "kind", "resource")}
            | {"before_digest": digest(a["before"]), "after_digest": digest(a["after"])}
            for a in report["actions"]
        ]
        try:
            with Ledger.open(self.endpoints.data_dir) as ledger:
                ledger.append(entries)
        except Exception as exc:
            log.error("ledger in %s could not record drift: %s", self.endpoints.data_dir, exc)

    async def restore(
        self, checkpoints: dict[str, Section], desired: dict[str, Section], *, mode: str, actor: str
    ) -> ApplyResult:
        """Put the host back to `checkpoints` exactly and enforce `desired` again."""
        async with self.lock:
            self.desired = dict(desired)
            started = time.monotonic()
            plan, result = await restore_checkpoints(self.plugins, checkpoints)
            touched = set(checkpoints)
            return self._finish(plan, result, touched, mode=mode, actor=actor, started=started)

    async def check(self, names: Iterable[str], *, mode: str) -> dict[str, Any] | None:
        """After events touching `names`: handle drift of declared sections by policy, and
        keep their cache from the plan's reads; every other touched section goes stale (read
        when someone asks). Returns the drift report, or None when the host matches."""
        names = set(names)
        async with self.lock:
            declared = {n: s for n, s in self.desired.items() if n in names}
            plan = await self._plan(declared) if declared else Plan([])
            for entry in plan.plugins:  # a blocked one is already noted as skipped by _plan
                if entry.current is None:
                    continue
                if self.plugins[entry.name].reads_all(entry.desired):
                    self._cached(entry.name, entry.current)
                else:
                    self.stale.add(entry.name)
            self.stale |= names - {entry.name for entry in plan.plugins}
            if not plan.pending:
                return None
            return await self._drifted(plan, mode)

    async def _drifted(self, plan: Plan, mode: str) -> dict[str, Any]:
        self.drift_events += 1
        report: dict[str, Any] = {
            "time": now_text(),
            "policy": str(self.policy),
            "actions": [a.to_json() for a in plan.actions],
            "held": {},
        }
        if self.policy == Policy.OBSERVE:
            log.warning("drift (observe, not repaired): %s", _describe(plan.actions))
            self._emit("drift", report)
            if self.use_ledger:
                self._record_drift(report)
            return report

        held = {_key(a): self.backoff.held(_key(a)) for a in plan.actions}
        held = {key: round(delay, 3) for key, delay in held.items() if delay > 0}
        report["held"] = held
        for entry in plan.plugins:
            entry.actions = [a for a in entry.actions if _key(a) not in held]
        if held:
            log.warning(
                "drift: %s keep(s) drifting back (another tool fighting op-dbus?); "
                "left alone for %s s",
                ", ".join(sorted(held)),
                max(held.values()),
            )
            self.retry_after = max(held.values())
        self._emit("drift", report)
        if not plan.pending:
            return report
        log.warning("drift: repairing %s", _describe(plan.actions))
        for action in plan.actions:
            hold = self.backoff.repaired(_key(action))
            if hold:
                report["held"][_key(action)] = hold
                self.retry_after = max(self.retry_after or 0.0, hold)
        result = await self._apply(plan, mode=mode, actor=f"{ACTOR}:corrective")
        report["result"] = result.to_json()
        return report


def _key(action: Action) -> str:
    return f"{action.plugin}:{action.resource}"


def _describe(actions: list[Action]) -> str:
    return ", ".join(a.describe() for a in actions)
