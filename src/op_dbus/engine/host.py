"""The transaction service: the one way anything changes the host.

A `Host` holds one plugin per section it may touch and owns the whole change: the host-wide
apply lock, plan, apply, verify, rollback, the ledger record (one failure policy) and the
pending try (checkpoint, deadline, confirm, rollback). The CLI, the daemon (and the MCP server
and fleet agent after them) call it and render what it returns; none of them composes the
steps itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from op_dbus.endpoints import Endpoints
from op_dbus.engine.apply import ApplyResult, Progress, apply_plan, restore
from op_dbus.engine.inventory import read_section
from op_dbus.engine.lock import DEFAULT_WAIT, ApplyLock
from op_dbus.engine.plan import Plan, make_plan
from op_dbus.engine.verify import verify_state
from op_dbus.errors import InvalidInput, NothingPending, OpError, Refused
from op_dbus.exitcodes import ExitCode
from op_dbus.ledger.entries import now_text
from op_dbus.limits import TRY_MAX_SECONDS, TRY_MIN_SECONDS
from op_dbus.plugins import make_plugin
from op_dbus.plugins.base import Mismatch, Plugin, Section

if TYPE_CHECKING:
    from op_dbus.ledger.store import Ledger

log = logging.getLogger("op_dbus.engine")


@dataclass
class Change:
    """One change made through the Host: the plan it ran and what came of it."""

    plan: Plan
    result: ApplyResult

    def to_json(self) -> dict[str, Any]:
        return {"plan": self.plan.to_json(), "result": self.result.to_json()}


@dataclass
class PendingTry:
    """An applied change that is rolled back unless confirmed by `deadline` (epoch seconds)."""

    checkpoints: dict[str, Section]
    deadline: float
    actor: str
    mode: str
    started: str

    def to_json(self) -> dict[str, Any]:
        return {
            "actor": self.actor,
            "started": self.started,
            "deadline": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.deadline)),
            "seconds_left": max(0.0, round(self.deadline - time.time(), 1)),
            "sections": sorted(self.checkpoints),
        }


@dataclass
class Verification:
    """Sections that could not be checked (and why), and mismatches of those that could."""

    blocked: dict[str, str]
    mismatches: dict[str, list[Mismatch]]

    def to_json(self) -> dict[str, Any]:
        return {
            "blocked": self.blocked,
            "mismatches": {n: [m.to_json() for m in ms] for n, ms in self.mismatches.items()},
        }


Select = Callable[[Plan], None]
"""Narrows a plan in place before it runs (the daemon holds back resources another tool
keeps changing)."""


def check_try_seconds(seconds: float) -> None:
    if not TRY_MIN_SECONDS <= seconds <= TRY_MAX_SECONDS:
        raise InvalidInput(
            f"confirm_within must be from {TRY_MIN_SECONDS} to {TRY_MAX_SECONDS} seconds, "
            f"got {seconds}"
        )


class Host:
    """The host as one transactional object. Close it when done (`async with` does)."""

    def __init__(
        self,
        endpoints: Endpoints,
        names: Iterable[str],
        *,
        use_ledger: bool = True,
        lock_wait: float = DEFAULT_WAIT,
    ) -> None:
        self.endpoints = endpoints
        self.names = tuple(names)
        self.use_ledger = use_ledger
        self.lock = ApplyLock(endpoints.data_dir, lock_wait)
        self.busy = asyncio.Lock()
        """One use of the plugins at a time in this process (reads too: a backend's client
        is not shared by two requests at once); writers then take the host-wide lock."""
        self.try_listeners: list[Callable[[str, PendingTry, Change | None], None]] = []
        """Told when a try ends: ("confirmed", try, None) or ("rolled_back", try, change)."""
        self.plugins: dict[str, Plugin] = {n: make_plugin(n, endpoints) for n in self.names}
        self.pending: PendingTry | None = None
        self.try_ended = asyncio.Event()
        """Set when the pending try is confirmed or rolled back (a front end may wait on it)."""
        self._timer: asyncio.Task[None] | None = None
        self.last_try_outcome: Change | None = None

    async def __aenter__(self) -> Host:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Release the plugins. A try still pending is rolled back first: closing is no
        confirmation (the safe side)."""
        if self.pending is not None:
            await self.rollback(actor="op-dbus:shutdown", why="closed before the confirmation")
        elif self._timer is not None and not self._timer.done():
            await self._timer  # its rollback is under way: let it finish
        for plugin in self.plugins.values():
            await plugin.close()

    async def renew(self, name: str) -> None:
        """A fresh plugin after its backend failed: the next use connects anew."""
        try:
            await self.plugins[name].close()
        except Exception as exc:
            log.debug("closing %s plugin: %s", name, exc)
        self.plugins[name] = make_plugin(name, self.endpoints)

    async def _renew_blocked(self, plan: Plan) -> None:
        """Sections whose backend failed get a fresh plugin (a refusal is no failure)."""
        for entry in plan.blocked:
            if entry.status != "refused":
                await self.renew(entry.name)

    # -- reading -------------------------------------------------------------------------
    async def read(
        self, names: Iterable[str] | None = None
    ) -> tuple[dict[str, Section], dict[str, str]]:
        """Each named section in full (default: all of this Host's), and why others could not be."""
        chosen = set(self.names if names is None else names)
        wanted = [n for n in self.names if n in chosen]
        async with self.busy:
            results = await asyncio.gather(*(read_section(self.plugins[n]) for n in wanted))
        sections: dict[str, Section] = {}
        skipped: dict[str, str] = {}
        for name, (section, reason) in zip(wanted, results, strict=True):
            if section is None:
                skipped[name] = reason
                await self.renew(name)
            else:
                sections[name] = section
        return sections, skipped

    async def plan(self, desired: Mapping[str, Section]) -> Plan:
        """What reaching `desired` takes; sections that could not be planned say why."""
        self._check_names(desired)
        async with self.busy:
            plan = await make_plan(dict(desired), self.plugins)
            await self._renew_blocked(plan)
        return plan

    async def verify(self, desired: Mapping[str, Section], *, attempts: int = 1) -> Verification:
        """Does the host match `desired`? One look by default: no waiting for it to settle."""
        self._check_names(desired)
        async with self.busy:
            blocked: dict[str, str] = {}
            for name in desired:
                if not (availability := await self.plugins[name].available()).ok:
                    blocked[name] = availability.reason
            if blocked:
                return Verification(blocked, {})
            found = await verify_state(dict(desired), self.plugins, attempts=attempts, delay=0.2)
        return Verification({}, {n: items for n, items in found.items() if items})

    # -- changing ------------------------------------------------------------------------
    async def apply(
        self,
        desired: Mapping[str, Section] | Callable[[], Mapping[str, Section]],
        *,
        actor: str,
        mode: str,
        progress: Progress | None = None,
        select: Select | None = None,
        confirm_within: float | None = None,
        on_plan: Callable[[Plan], None] | None = None,
        expect_revision: str | None = None,
        repair: bool = False,
    ) -> Change:
        """Plan and apply `desired` as one checkpointed change, under the apply lock, and
        record it. `on_plan` sees the plan before it runs (to show it). With
        `confirm_within`, a change that took effect becomes the pending try: rolled back
        unless `confirm()` comes in time. A callable `desired` is read once the lock is held:
        a caller whose wishes may change while it waits (the daemon's drift check, behind a
        try's rollback) plans what it wants then, not what it wanted before. With
        `expect_revision` (a plan's `revision`), the change is refused unless the host still
        reads as it did for that plan: a caller applies only what it was shown. `repair`
        (the daemon's drift repair): verified once, and differences left are new drift
        (exit 3) rather than a failure to roll back (engine/apply.py)."""
        if confirm_within is not None:
            check_try_seconds(confirm_within)
        if not callable(desired):
            self._check_names(desired)
        async with self.busy, self.lock.held(actor):
            if callable(desired):
                desired = desired()
                self._check_names(desired)
            if confirm_within is not None and self.pending is not None:
                pending = self.pending.to_json()
                raise Refused(
                    "try",
                    "refused, nothing applied: another try is waiting for its confirmation "
                    f"(rolled back at {pending['deadline']}, in {pending['seconds_left']} s, "
                    "unless confirmed)",
                )
            plan = await make_plan(dict(desired), self.plugins)
            if expect_revision is not None and plan.revision != expect_revision:
                raise Refused(
                    "plan",
                    f"the host changed since the plan was made (revision {expect_revision[:12]}, "
                    f"now {plan.revision[:12]}); nothing was changed: make a new plan",
                )
            if select is not None:
                select(plan)
            if on_plan is not None:
                on_plan(plan)
            await self._renew_blocked(plan)
            if not plan.pending or plan.blocked:  # nothing to do, or refused: nothing to record
                result = await apply_plan(plan, self.plugins)
            else:
                with self._ledger() as ledger:
                    result = await apply_plan(
                        plan,
                        self.plugins,
                        on_progress=progress,
                        repair=repair,
                        verify_attempts=1 if repair else 5,
                    )
                    self._record(ledger, plan, result, desired, mode=mode, actor=actor)
            change = Change(plan, result)
            if confirm_within is not None and result.exit_code == ExitCode.OK and result.applied:
                self._hold(plan, confirm_within, actor=actor, mode=mode)
                result.message += f"; confirm within {confirm_within:g} s or it is rolled back"
            return change

    async def restore(self, checkpoints: Mapping[str, Section], *, actor: str, mode: str) -> Change:
        """Put the host back to `checkpoints` exactly (an unconfirmed try, a recovery)."""
        async with self.busy, self.lock.held(actor):
            with self._ledger() as ledger:
                change = await self._restore(checkpoints)
                self._record(
                    ledger, change.plan, change.result, checkpoints, mode=mode, actor=actor
                )
            return change

    async def _restore(self, checkpoints: Mapping[str, Section]) -> Change:
        usable = {n: p for n, p in self.plugins.items() if n in checkpoints}
        restoration = await restore({n: checkpoints[n] for n in usable}, usable)
        result = ApplyResult(ExitCode.OK, applied=restoration.done)
        result.error = "; ".join(f"{n}: {e}" for n, e in restoration.errors.items()) or None
        if restoration.left:
            from op_dbus.engine.apply import describe_left

            result.exit_code = ExitCode.ROLLBACK_FAILED
            result.rollback_left = restoration.left
            result.message = f"rollback incomplete, left: {describe_left(restoration.left)}"
        else:
            result.message = f"rolled back {len(result.applied)} action(s) to the checkpoint"
        return Change(restoration.plan, result)

    # -- tries ---------------------------------------------------------------------------
    def _hold(self, plan: Plan, seconds: float, *, actor: str, mode: str) -> None:
        checkpoints = {
            e.name: copy.deepcopy(e.current) for e in plan.plugins if e.actions and e.current
        }
        self.pending = PendingTry(checkpoints, time.time() + seconds, actor, mode, now_text())
        self.try_ended.clear()
        self._timer = asyncio.create_task(self._expire(seconds))
        log.warning("try: applied; rolling back in %g s unless confirmed", seconds)

    async def _expire(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await self.rollback(
            actor=f"{self.pending.actor if self.pending else ''}:timeout",
            why=f"not confirmed within {seconds:g} s",
        )

    def confirm(self, *, actor: str) -> PendingTry:
        """Keep the tried state (NothingPending when no try waits)."""
        pending, self.pending = self.pending, None
        if pending is None:
            raise NothingPending("nothing to confirm: no tried state is waiting")
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._record_events([{"type": "confirm", "actor": actor, "try_actor": pending.actor}])
        self._try_over("confirmed", pending, None)
        log.info("try: confirmed by %s", actor)
        return pending

    async def rollback(self, *, actor: str, why: str) -> Change:
        """Roll the pending try back now (NothingPending when no try waits)."""
        pending, self.pending = self.pending, None
        if pending is None:
            raise NothingPending("nothing to roll back: no tried state is waiting")
        if self._timer is not None and self._timer is not asyncio.current_task():
            self._timer.cancel()
        self._timer = None
        log.warning("try: %s; rolling back", why)
        change = await self.restore(pending.checkpoints, actor=actor, mode=pending.mode)
        if change.result.exit_code == ExitCode.OK:
            change.result.exit_code = ExitCode.ROLLED_BACK
            change.result.message = f"{why}: rolled back"
        else:
            change.result.message = f"{why}; {change.result.message}"
        self.last_try_outcome = change
        self._try_over("rolled_back", pending, change)
        return change

    def _try_over(self, how: str, pending: PendingTry, change: Change | None) -> None:
        self.try_ended.set()
        for listener in self.try_listeners:
            try:
                listener(how, pending, change)
            except Exception:  # a front end's bookkeeping must not undo the outcome
                log.exception("try listener failed")

    # -- the ledger ----------------------------------------------------------------------
    @contextlib.contextmanager
    def _ledger(self) -> Iterator[Ledger | None]:
        """The ledger, opened before the host is touched: a change that could not be
        recorded is refused before it starts."""
        if not self.use_ledger:
            yield None
            return
        import sqlite3

        from op_dbus.ledger.store import Ledger, LedgerError

        try:
            ledger = Ledger.open(self.endpoints.data_dir)
        except (OSError, sqlite3.Error, LedgerError) as err:
            raise OpError(
                f"the ledger in {self.endpoints.data_dir} cannot be written ({err}); "
                "nothing was changed (--no-ledger turns recording off)"
            ) from None
        try:
            yield ledger
        finally:
            ledger.close()

    def _record(
        self,
        ledger: Ledger | None,
        plan: Plan,
        result: ApplyResult,
        desired: Mapping[str, Section],
        *,
        mode: str,
        actor: str,
    ) -> None:
        """Applies that set out to change the host are recorded whatever their outcome; a
        no-op or a refused apply changed nothing and records nothing. A change that cannot
        be recorded is exit 1, loudly."""
        if ledger is None or not plan.pending or result.exit_code == ExitCode.COMPONENT_MISSING:
            return
        import sqlite3

        from op_dbus.engine.record import record_apply
        from op_dbus.ledger.store import LedgerError

        try:
            record_apply(ledger, plan=plan, result=result, desired=desired, mode=mode, actor=actor)
        except (OSError, sqlite3.Error, LedgerError) as err:
            result.exit_code = ExitCode.UNEXPECTED
            result.message += (
                f"; but the ledger in {self.endpoints.data_dir} could not record it: {err}"
            )

    def _record_events(self, entries: list[dict[str, Any]]) -> None:
        """Ledger entries that are not an apply (a confirmation, observed drift), one append."""
        if not self.use_ledger or not entries:
            return
        from op_dbus.ledger.store import Ledger

        try:
            with Ledger.open(self.endpoints.data_dir) as ledger:
                ledger.append([{"time": now_text(), **entry} for entry in entries])
        except Exception as exc:  # the host did not change: a lost note is loud, not fatal
            log.error(
                "ledger in %s could not record %s: %s",
                self.endpoints.data_dir,
                entries[0]["type"],
                exc,
            )

    def record_drift(self, entries: list[dict[str, Any]]) -> None:
        """Observed drift that was not repaired (policy observe): one entry per action."""
        self._record_events(entries)

    def _check_names(self, desired: Mapping[str, Section]) -> None:
        unknown = sorted(set(desired) - set(self.names))
        if unknown:
            raise InvalidInput(
                f"section(s) {', '.join(unknown)} not handled here (this host handles "
                f"{', '.join(self.names)})"
            )
