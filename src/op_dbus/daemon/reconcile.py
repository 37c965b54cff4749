"""The daemon's model of the host: desired state, cached current state, and what to do on drift.

Every change goes through the engine's Host (the transaction service): its apply lock makes
an intentional change, a drift repair and a try's rollback take turns, with each other and
with any other writer on the host. Drift is any pending action for a declared section found
after an event: under `enforce` it is repaired (recorded as a corrective apply, actor
`op-dbus-daemon:corrective`), under `observe` it is reported and recorded only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from op_dbus.daemon.backoff import DriftBackoff
from op_dbus.engine.host import Change, Host
from op_dbus.engine.options import ApplyOptions
from op_dbus.engine.plan import Plan
from op_dbus.exitcodes import ExitCode
from op_dbus.ledger.entries import digest, now_text
from op_dbus.plugins.base import Action, Section

log = logging.getLogger("op_dbus.daemon")

ACTOR = "op-dbus-daemon"


def own_state(actor: str, mode: str, *, confirm_within: float | None = None) -> ApplyOptions:
    """How the daemon applies what it enforces itself: authoritative (pruned), its dangerous
    actions accepted (it restores what the state file says; probes guard connectivity)."""
    return ApplyOptions(actor, mode, confirm_within=confirm_within, prune=True, acknowledge=True)


class Policy(StrEnum):
    ENFORCE = "enforce"
    OBSERVE = "observe"


Listener = Callable[[str, dict[str, Any]], None]
"""Told of "drift" and "applied" reports (the D-Bus signals, the systemd status line)."""


@dataclass
class Reconciler:
    """Keeps the host at `desired` through `host`, and a cache of what the host is."""

    host: Host
    policy: Policy
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
    repairs: int = 0
    last_apply: dict[str, Any] = field(default_factory=dict)
    retry_after: float | None = None
    """Seconds after which the caller should check again (a held resource's hold ends)."""

    def __post_init__(self) -> None:
        self.stale = set(self.names)

    @property
    def names(self) -> tuple[str, ...]:
        return self.host.names

    async def close(self) -> None:
        await self.host.close()

    def _emit(self, kind: str, report: dict[str, Any]) -> None:
        for listener in self.listeners:
            try:
                listener(kind, report)
            except Exception:  # a listener's failure must not stop reconciling
                log.exception("listener failed on %s", kind)

    # -- reading ---------------------------------------------------------------------------
    def _cached(self, name: str, section: Section) -> None:
        self.cache[name] = section
        self.skipped.pop(name, None)
        self.stale.discard(name)

    def _unreadable(self, name: str, reason: str) -> None:
        self.cache.pop(name, None)
        self.skipped[name] = reason
        self.stale.discard(name)

    async def cached_state(self) -> dict[str, Any]:
        """What `op-dbus query --json` prints, from the cache (stale sections read first)."""
        if not self.use_cache:
            self.stale = set(self.names)
        if self.stale:
            sections, skipped = await self.host.read(set(self.stale))
            for name, section in sections.items():
                self._cached(name, section)
            for name, reason in skipped.items():
                self._unreadable(name, reason)
        return {"state": {"version": 1, "plugins": dict(self.cache)}, "skipped": dict(self.skipped)}

    def _note_plan(self, plan: Plan) -> None:
        """Keep a plan's full readings in the cache; partial ones and blocked ones say so."""
        for entry in plan.plugins:
            if entry.status == "refused":  # the request's fault: the section reads fine
                self.stale.add(entry.name)
            elif entry.current is None:
                self._unreadable(entry.name, entry.reason)
            elif (plugin := self.host.plugins.get(entry.name)) and plugin.reads_all(entry.desired):
                self._cached(entry.name, entry.current)
            else:
                self.stale.add(entry.name)

    async def diff(self, desired: dict[str, Section], *, prune: bool = False) -> Plan:
        plan = await self.host.plan(desired, prune=prune)
        for entry in plan.blocked:
            if entry.status != "refused":  # a refusal is the request's fault, not the host's
                self._unreadable(entry.name, entry.reason)
        return plan

    async def verify(self, desired: dict[str, Section] | None = None) -> dict[str, Any]:
        """Mismatches of the host against `desired` (default: what the daemon enforces)."""
        return (await self.host.verify(self.desired if desired is None else desired)).to_json()

    # -- changing --------------------------------------------------------------------------
    async def apply_desired(
        self,
        desired: dict[str, Section],
        options: ApplyOptions,
        *,
        apply: dict[str, Section] | None = None,
    ) -> Change:
        """An intentional change: `desired` becomes what the daemon enforces, and `apply`
        (default: all of `desired`) is applied now. A resource held by backoff is forgiven:
        the admin asked for it explicitly. The daemon's own state is applied with
        `own_state` options; a caller's runtime change with its own `prune` and
        `acknowledge`."""
        actor = options.actor
        previous = self.desired
        self.desired = dict(desired)
        started = time.monotonic()
        try:
            change = await self.host.apply(desired if apply is None else apply, options)
        except BaseException:
            self.desired = previous
            raise
        if change.result.exit_code not in (ExitCode.OK, ExitCode.UNEXPECTED):
            self.desired = previous  # refused or rolled back: what was enforced stays
        self.backoff.clear()
        self._finish(change, actor=actor, started=started)
        return change

    def _finish(self, change: Change, *, actor: str, started: float) -> None:
        """Note the apply, mark the sections it touched stale, and tell the listeners.

        Only touched sections can have changed; they are re-read when the cache is next
        asked for, which spares an apply (and a no-op re-apply) reads nobody asked for."""
        result = change.result
        self.last_apply = {
            "time": now_text(),
            "actor": actor,
            "exit_code": int(result.exit_code),
            "message": result.message,
            "actions": len(result.applied),
            "seconds": round(time.monotonic() - started, 4),
        }
        level = {ExitCode.OK: logging.INFO, ExitCode.CHANGES_PENDING: logging.WARNING}.get(
            result.exit_code, logging.ERROR
        )
        for action in change.plan.dangerous if result.applied else ():
            log.warning(
                "%s: dangerous, ran: %s (%s)", actor, action.describe(), "; ".join(action.dangerous)
            )
        log.log(level, "%s: %s", actor, result.message)
        for entry in change.plan.blocked:
            if entry.status != "refused":
                self._unreadable(entry.name, entry.reason)
        self.stale |= {entry.name for entry in change.plan.plugins if entry.actions}
        self._emit("applied", dict(self.last_apply))

    def restored(self, change: Change, desired: dict[str, Section], *, actor: str) -> None:
        """A try was rolled back by the Host: enforce `desired` again and say so."""
        self.desired = dict(desired)
        self._finish(change, actor=actor, started=time.monotonic())

    async def check(self, names: Iterable[str], *, mode: str) -> dict[str, Any] | None:
        """After events touching `names`: handle drift of declared sections by policy, and
        keep their cache from the plan's reads; every other touched section goes stale (read
        when someone asks). Returns the drift report, or None when the host matches.

        A repair is applied as such (Host.apply `repair`): when its verify finds the host
        changed again meanwhile, what it did stands and the sections are checked anew at
        once, as new drift; only a failed action rolls the repair back."""
        names = set(names)

        def declared() -> dict[str, Section]:
            return {n: s for n, s in self.desired.items() if n in names}

        self.stale |= names - set(declared())
        if not declared():
            return None
        if self.policy == Policy.OBSERVE:
            plan = await self.host.plan(declared(), prune=True)
            self._note_plan(plan)
            if not plan.pending:
                return None
            return self._observed(plan)

        reports: list[dict[str, Any]] = []
        started = time.monotonic()
        change = await self.host.apply(
            declared,  # read under the lock: a try's rollback may change it meanwhile
            replace(own_state(f"{ACTOR}:corrective", mode), repair=True),
            select=lambda plan: reports.append(self._hold_back(plan)),
        )
        if not reports or not reports[0]["actions"]:
            self._note_plan(change.plan)
            return None
        report = reports[0]
        if change.plan.pending:
            self.repairs += 1
            report["result"] = change.result.to_json()
            self._finish(change, actor=f"{ACTOR}:corrective", started=started)
            if change.result.exit_code == ExitCode.CHANGES_PENDING:  # drifted again meanwhile
                self.retry_after = self.retry_after or 0.0  # look again now: new drift
        return report

    def _observed(self, plan: Plan) -> dict[str, Any]:
        self.drift_events += 1
        report = self._report(plan)
        log.warning("drift (observe, not repaired): %s", _describe(plan.actions))
        self._emit("drift", report)
        self.host.record_drift(
            [
                {
                    "type": "drift",
                    "drift_id": report["drift_id"],
                    "actor": f"{ACTOR}:observe",
                    "policy": str(self.policy),
                    "result": "reported, not repaired (observe)",
                    "plugin": a.plugin,
                    "kind": str(a.kind),
                    "resource": a.resource,
                    "before_digest": digest(a.before),
                    "after_digest": digest(a.after),
                }
                for a in plan.actions
            ]
        )
        return report

    def _report(self, plan: Plan) -> dict[str, Any]:
        import uuid

        return {
            "time": now_text(),
            "drift_id": uuid.uuid4().hex,
            "policy": str(self.policy),
            "actions": [a.to_json() for a in plan.actions],
            "held": {},
        }

    def _hold_back(self, plan: Plan) -> dict[str, Any]:
        """The Host's `select` for a repair: report the drift, drop held resources' actions
        and count the repairs of the rest (a resource that keeps drifting back is held)."""
        report = self._report(plan)
        if not plan.pending:
            return report
        self.drift_events += 1
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
        if plan.pending:
            log.warning("drift: repairing %s", _describe(plan.actions))
        for action in plan.actions:
            hold = self.backoff.repaired(_key(action))
            if hold:
                report["held"][_key(action)] = hold
                self.retry_after = max(self.retry_after or 0.0, hold)
        return report


def _key(action: Action) -> str:
    return f"{action.plugin}:{action.resource}"


def _describe(actions: list[Action]) -> str:
    return ", ".join(a.describe() for a in actions)
