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
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from op_dbus.endpoints import Endpoints
from op_dbus.engine import probe
from op_dbus.engine.apply import ApplyResult, Progress, apply_plan, checkpoints_of, restore
from op_dbus.engine.interrupts import Interrupts
from op_dbus.engine.inventory import read_section
from op_dbus.engine.journal import Journal, JournalError, PendingChange
from op_dbus.engine.lock import DEFAULT_WAIT, ApplyLock, read_holder
from op_dbus.engine.options import ApplyOptions
from op_dbus.engine.plan import Plan, make_plan
from op_dbus.engine.probe import Target
from op_dbus.engine.verify import verify_state
from op_dbus.errors import InvalidInput, NothingPending, OpError, Refused, Unconfirmed
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


PendingTry = PendingChange
"""A try: an applied change rolled back unless confirmed by its `deadline` (epoch seconds)."""


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


def unconfirmed_message(plan: Plan, unconfirmed: list[str]) -> str:
    """Why a change with dangerous actions nobody confirmed is refused, each with its reasons."""
    reasons = {a.describe(): a.dangerous for a in plan.dangerous}
    listed = "; ".join(f"{item} ({', '.join(reasons[item])})" for item in unconfirmed)
    return (
        f"refused, nothing changed: dangerous action(s) not confirmed: {listed}. Confirm on "
        "a terminal, pass --yes, or acknowledge each (D-Bus/MCP `acknowledge`)"
    )


def check_try_seconds(seconds: float) -> None:
    if not TRY_MIN_SECONDS <= seconds <= TRY_MAX_SECONDS:
        raise InvalidInput(
            f"confirm_within must be from {TRY_MIN_SECONDS} to {TRY_MAX_SECONDS} seconds, "
            f"got {seconds}"
        )


class Host:
    """The host as one transactional object. Close it when done (`async with` does).

    Every change is journalled in the data dir (engine/journal.py) and announced in the
    ledger before its first action. A try's timer is this Host's when `keeps_timer` (the
    daemon); otherwise a detached try keeper holds it (engine/keeper.py) and this Host only
    writes the try down. `catch_signals` (the CLI): SIGINT, SIGTERM, SIGHUP during a change
    roll it back (engine/interrupts.py).
    """

    def __init__(
        self,
        endpoints: Endpoints,
        names: Iterable[str],
        *,
        use_ledger: bool = True,
        lock_wait: float = DEFAULT_WAIT,
        keeps_timer: bool = True,
        catch_signals: bool = False,
        probes: Sequence[Target] = (),
    ) -> None:
        self.endpoints = endpoints
        self.probes = tuple(probes)
        """Targets every probed change must still reach (`run --probe`), besides the gateway."""
        self.names = tuple(names)
        self.use_ledger = use_ledger
        self.keeps_timer = keeps_timer
        self.catch_signals = catch_signals
        self.lock = ApplyLock(endpoints.data_dir, lock_wait)
        self.journal = Journal(endpoints.data_dir)
        self.busy = asyncio.Lock()
        """One use of the plugins at a time in this process (reads too: a backend's client
        is not shared by two requests at once); writers then take the host-wide lock."""
        self.try_listeners: list[Callable[[str, PendingTry, Change | None], None]] = []
        """Told when a try ends: ("confirmed", try, None) or ("rolled_back", try, change)."""
        self.plugins: dict[str, Plugin] = {n: make_plugin(n, endpoints) for n in self.names}
        self.pending: PendingTry | None = None
        """The try this Host made and still answers for (closing it rolls it back)."""
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
            with contextlib.suppress(NothingPending):  # its keeper may have been first
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

    async def plan(self, desired: Mapping[str, Section], *, prune: bool = False) -> Plan:
        """What reaching `desired` takes (`prune`: the document is authoritative, owned
        resources it does not list go); sections that could not be planned say why."""
        self._check_names(desired)
        async with self.busy:
            plan = await make_plan(dict(desired), self.plugins, prune=prune)
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
        options: ApplyOptions,
        *,
        progress: Progress | None = None,
        select: Select | None = None,
        on_plan: Callable[[Plan], None] | None = None,
    ) -> Change:
        """Plan and apply `desired` as one checkpointed change, under the apply lock, and
        record it as `options.actor`. With `prune` the document is authoritative: owned
        resources it does not list are removed. Dangerous actions (`Action.dangerous`) run
        only when `acknowledge` covers them (True: all), else the change is refused, nothing
        touched. A change a plugin says touches connectivity is probed (probe.py: the
        gateway, `probes` and the Host's own targets) and rolled back by itself when a probe
        fails. `on_plan` sees the plan before it runs (to show it). With `confirm_within`, a
        change that took effect becomes the pending try: rolled back unless `confirm()` comes
        in time. A callable `desired` is read once the lock is held: a caller whose wishes
        may change while it waits (the daemon's drift check, behind a try's rollback) plans
        what it wants then, not what it wanted before. With `expect_revision` (a plan's
        `revision`), the change is refused unless the host still reads as it did for that
        plan: a caller applies only what it was shown. `repair` (the daemon's drift repair):
        verified once, and differences left are new drift (exit 3) rather than a failure to
        roll back (engine/apply.py).

        Before anything is planned, what an earlier process left in the journal is settled:
        tries past their deadline are rolled back, and an apply that was killed half-way is
        named in the result (its checkpoint stays for `op-dbus rollback`)."""
        if options.confirm_within is not None:
            check_try_seconds(options.confirm_within)
        if not callable(desired):
            self._check_names(desired)
        async with self.busy, self.lock.held(options.actor):
            if callable(desired):
                desired = desired()
                self._check_names(desired)
            notes = await self._settle()
            waiting = self._waiting_try()
            if options.confirm_within is not None and waiting is not None:
                shown = waiting.to_json()
                raise Refused(
                    "try",
                    "refused, nothing applied: another try is waiting for its confirmation "
                    f"(rolled back at {shown['deadline']}, in {shown['seconds_left']} s, "
                    "unless confirmed)",
                )
            plan = await make_plan(dict(desired), self.plugins, prune=options.prune)
            expected = options.expect_revision
            if expected is not None and plan.revision != expected:
                raise Refused(
                    "plan",
                    f"the host changed since the plan was made (revision {expected[:12]}, "
                    f"now {plan.revision[:12]}); nothing was changed: make a new plan",
                )
            if select is not None:
                select(plan)
            if not plan.blocked and (unconfirmed := plan.unacknowledged(options.acknowledge)):
                raise Unconfirmed("plan", unconfirmed_message(plan, unconfirmed))
            if on_plan is not None:
                on_plan(plan)
            await self._renew_blocked(plan)
            if not plan.pending or plan.blocked:  # nothing to do, or refused: nothing to record
                change = Change(plan, await apply_plan(plan, self.plugins))
            else:
                change = await self._change(plan, desired, options, progress)
            change.result.message += "".join(f"; {note}" for note in notes)
            return change

    async def _change(
        self,
        plan: Plan,
        desired: Mapping[str, Section],
        options: ApplyOptions,
        progress: Progress | None,
    ) -> Change:
        """The write-ahead part of an apply: journal and intent first, then the host; a
        change that touches connectivity is probed after it."""
        actor, mode, confirm_within = options.actor, options.mode, options.confirm_within
        checkpoints = checkpoints_of(plan)
        pending = PendingChange(
            apply_id=uuid.uuid4().hex,
            state="applying",
            checkpoints=checkpoints,
            actor=actor,
            mode=str(mode),
            started=now_text(),
            deadline=None if confirm_within is None else time.time() + confirm_within,
            window=confirm_within,
        )
        with self._ledger() as ledger, self._interrupts() as interrupts:
            self._write_ahead(ledger, plan, pending)
            before = await probe.baseline() if self._probed(plan) else None
            result = await apply_plan(
                plan,
                self.plugins,
                on_progress=progress,
                interrupts=interrupts,
                repair=options.repair,
                verify_attempts=1 if options.repair else 5,
                checkpoints=pending.checkpoints,
            )
            if before is not None and result.exit_code == ExitCode.OK:
                await self._check_probes(plan, result, before, (*self.probes, *options.probes))
            self._record(ledger, plan, result, desired, mode=mode, actor=actor, pending=pending)
        change = Change(plan, result)
        if confirm_within is not None and result.exit_code == ExitCode.OK and result.applied:
            self._hold(pending, confirm_within)
            result.message += f"; confirm within {confirm_within:g} s or it is rolled back"
        elif result.exit_code == ExitCode.ROLLBACK_FAILED:  # the checkpoint is still needed
            result.message += (
                f"; the checkpoint stays in {self.journal.dir}/{pending.apply_id}.json: "
                "`op-dbus rollback` restores it"
            )
        else:
            self.journal.remove(pending.apply_id)
        return change

    def _write_ahead(self, ledger: Ledger | None, plan: Plan, pending: PendingChange) -> None:
        """The checkpoint to the journal, the intent to the ledger: either fails, nothing
        was changed."""
        from op_dbus.engine.record import record_intent

        where = self.endpoints.data_dir
        try:
            self.journal.write(pending)
        except OSError as err:
            raise OpError(
                f"the data dir {where} cannot be written ({err}); nothing was changed"
            ) from None
        if ledger is None:
            return
        try:
            record_intent(
                ledger,
                apply_id=pending.apply_id,
                plan=plan,
                checkpoints=pending.checkpoints,
                mode=pending.mode,
                actor=pending.actor,
                deadline=pending.deadline,
            )
        except Exception as err:
            self.journal.remove(pending.apply_id)
            raise OpError(
                f"the ledger in {where} cannot record the change ({err}); nothing was changed"
            ) from None

    def _probed(self, plan: Plan) -> bool:
        return any(
            self.plugins[entry.name].touches_connectivity(entry.actions)
            for entry in plan.plugins
            if entry.actions
        )

    async def _check_probes(
        self, plan: Plan, result: ApplyResult, before: probe.Baseline, targets: Sequence[Target]
    ) -> None:
        """The probed try's verdict: confirmed when the probes pass, else rolled back now."""
        verdict = await probe.check(before, targets)
        result.probes = verdict.checks
        if verdict.ok:
            if verdict.checks:
                result.message += f"; {verdict.describe()}"
            return
        log.warning("%s: rolling back", verdict.describe())
        checkpoints = checkpoints_of(plan)
        undone = await self._restore(checkpoints, Interrupts())
        result.rolled_back = undone.result.applied
        result.rollback_left = undone.result.rollback_left
        if undone.result.exit_code == ExitCode.OK:
            result.exit_code = ExitCode.ROLLED_BACK
            result.message = f"{verdict.describe()}; rolled back, the host is as before"
        else:
            result.exit_code = ExitCode.ROLLBACK_FAILED
            result.message = f"{verdict.describe()}; {undone.result.message}"

    @contextlib.contextmanager
    def _interrupts(self) -> Iterator[Interrupts]:
        interrupts = Interrupts()
        if not self.catch_signals:
            yield interrupts
            return
        with interrupts.catching():
            yield interrupts

    async def restore(
        self,
        checkpoints: Mapping[str, Section],
        *,
        actor: str,
        mode: str,
        recovers: str | None = None,
    ) -> Change:
        """Put the host back to `checkpoints` exactly (an unconfirmed try, a recovery)."""
        async with self.busy, self.lock.held(actor):
            return await self._restore_recorded(checkpoints, actor, mode, recovers)

    async def _restore_recorded(
        self, checkpoints: Mapping[str, Section], actor: str, mode: str, recovers: str | None
    ) -> Change:
        with self._ledger() as ledger:
            with self._interrupts() as interrupts:
                change = await self._restore(checkpoints, interrupts)
            self._record(
                ledger,
                change.plan,
                change.result,
                checkpoints,
                mode=mode,
                actor=actor,
                recovers=recovers,
            )
        return change

    async def _restore(self, checkpoints: Mapping[str, Section], interrupts: Interrupts) -> Change:
        for name in checkpoints:  # a journalled checkpoint may name sections this Host lacks
            if name not in self.plugins:
                self.plugins[name] = make_plugin(name, self.endpoints)
        restoration = await restore(
            {n: checkpoints[n] for n in checkpoints},
            self.plugins,
            stop=lambda: interrupts.first is not None,
        )
        result = ApplyResult(ExitCode.OK, applied=restoration.done)
        result.error = "; ".join(f"{n}: {e}" for n, e in restoration.errors.items()) or None
        if restoration.left:
            from op_dbus.engine.apply import describe_left

            stopped = "stopped by an interrupt, " if restoration.stopped else ""
            result.exit_code = ExitCode.ROLLBACK_FAILED
            result.rollback_left = restoration.left
            result.message = (
                f"rollback {stopped}incomplete, left: {describe_left(restoration.left)}"
            )
        else:
            result.message = f"rolled back {len(result.applied)} action(s) to the checkpoint"
        return Change(restoration.plan, result)

    # -- tries and interrupted changes ---------------------------------------------------
    def _hold(self, pending: PendingChange, seconds: float) -> None:
        """The applied change becomes the try: its deadline starts now, on disk first."""
        pending.state = "try"
        pending.deadline = time.time() + seconds
        self.journal.write(pending)
        self.pending = pending
        self.try_ended.clear()
        if self.keeps_timer:
            self._timer = asyncio.create_task(self._expire(seconds))
        log.warning("try: applied; rolling back in %g s unless confirmed", seconds)

    async def _expire(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await self.rollback(
            actor=f"{self.pending.actor if self.pending else ''}:timeout",
            why=f"not confirmed within {seconds:g} s",
        )

    def _waiting_try(self) -> PendingChange | None:
        """The try waiting for its confirmation, this Host's or another process's."""
        if self.pending is not None:
            return self.pending
        return next((c for c in self._journalled() if c.state == "try"), None)

    def _journalled(self) -> list[PendingChange]:
        try:
            return self.journal.all()
        except (OSError, JournalError) as err:
            raise OpError(f"the journal of changes in flight cannot be read: {err}") from None

    async def _settle(self) -> list[str]:
        """Under the lock: roll back what an earlier process left past its deadline (or
        half rolled back); return what to tell of that and of applies killed half-way."""
        notes = []
        for change in self._journalled():
            if self.pending is not None and change.apply_id == self.pending.apply_id:
                continue
            if change.state == "rollback" or (change.deadline is not None and change.expired):
                why = f"{describe_change(change)} was found past its deadline"
                done = await self._roll_back_journalled(change, "op-dbus:recovery", why)
                if done is not None:
                    notes.append(done.result.message)
            elif change.state == "applying" and change.deadline is None:
                notes.append(interrupted_message(change))
                log.warning("%s", notes[-1])
            elif change.state == "try" and self.keeps_timer and self.pending is None:
                self._adopt(change)
        return notes

    def _adopt(self, change: PendingChange) -> None:
        """A try whose timer died with its holder (a daemon that crashed, a keeper killed):
        this Host, which keeps timers, holds it until its deadline."""
        from op_dbus.engine.keeper import keeper_alive

        if change.deadline is None or keeper_alive(self.endpoints.data_dir, change.apply_id):
            return
        self.pending = change
        self.try_ended.clear()
        left = max(0.0, change.deadline - time.time())
        self._timer = asyncio.create_task(self._expire(left))
        log.warning(
            "%s: its timer was lost; rolling back in %.0f s unless confirmed",
            describe_change(change),
            left,
        )

    def confirm(self, *, actor: str) -> PendingTry:
        """Keep the tried state (NothingPending when no try waits): this Host's try, or one
        another process made (its keeper sees the journal file gone and ends). An apply
        killed half-way is confirmed too: the host stays as it is."""
        own = self.pending is not None
        pending = self.pending or self._confirmable()
        if pending.expired:
            raise NothingPending(
                f"too late: {describe_change(pending)} passed its deadline; it is rolled back"
            )
        if not self.journal.remove(pending.apply_id):
            self.pending = None
            raise NothingPending(f"nothing to confirm: {describe_change(pending)} is over")
        if pending is self.pending:
            self.pending = None
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
        event = {
            "type": "confirm",
            "apply_id": pending.apply_id,
            "actor": actor,
            "try_actor": pending.actor,
            "state": pending.state,
        }
        self._record_events([event])
        if own:
            self._try_over("confirmed", pending, None)
        log.info("try: confirmed by %s", actor)
        return pending

    def _confirmable(self) -> PendingChange:
        holder = read_holder(self.endpoints.data_dir)
        for change in reversed(self._journalled()):
            if change.state == "try":
                return change
            if change.state == "applying" and (holder is None or holder.get("pid") != change.pid):
                return change
        raise NothingPending("nothing to confirm: no tried state is waiting")

    async def rollback(self, *, actor: str, why: str) -> Change:
        """Roll back now (NothingPending when nothing waits): the pending try, else the
        newest journalled try or apply killed half-way."""
        pending, self.pending = self.pending, None
        own = pending is not None
        if self._timer is not None and self._timer is not asyncio.current_task():
            self._timer.cancel()
        self._timer = None
        async with self.busy, self.lock.held(actor):
            if pending is None:
                journalled = self._journalled()  # under the lock: none of them is in flight
                if not journalled:
                    raise NothingPending("nothing to roll back: no tried state is waiting")
                pending = journalled[-1]
            change = await self._roll_back_journalled(pending, actor, why, own=own)
        if change is None:
            raise NothingPending(f"nothing to roll back: {describe_change(pending)} is over")
        return change

    async def rollback_journalled(self, apply_id: str, *, actor: str, why: str) -> Change | None:
        """Roll back journalled change `apply_id` (a try keeper at the deadline); None when
        it was confirmed or rolled back first."""
        async with self.busy, self.lock.held(actor):
            pending = self.journal.get(apply_id)
            if pending is None:
                return None
            return await self._roll_back_journalled(pending, actor, why)

    async def _roll_back_journalled(
        self, pending: PendingChange, actor: str, why: str, *, own: bool = False
    ) -> Change | None:
        """Under the lock: claim the change (None: confirmed or rolled back meanwhile),
        restore its checkpoint, record, and drop it from the journal. `own`: it is this
        Host's try, whose end the listeners are told of."""
        claimed = self.journal.claim_rollback(pending.apply_id)
        if claimed is None:
            return None
        log.warning("%s: %s; rolling back", describe_change(claimed), why)
        change = await self._restore_recorded(
            claimed.checkpoints, actor, claimed.mode, claimed.apply_id
        )
        if change.result.exit_code == ExitCode.OK:
            self.journal.done_rollback(claimed.apply_id)
            change.result.exit_code = ExitCode.ROLLED_BACK
            change.result.message = f"{why}: rolled back"
        else:
            change.result.message = (
                f"{why}; {change.result.message} (the checkpoint stays in "
                f"{self.journal.dir}/{claimed.apply_id}.rollback: `op-dbus rollback` retries)"
            )
        if own:
            self.last_try_outcome = change
            self._try_over("rolled_back", claimed, change)
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
        pending: PendingChange | None = None,
        recovers: str | None = None,
    ) -> None:
        """Applies that set out to change the host are recorded whatever their outcome; a
        no-op or a refused apply changed nothing and records nothing. A change that cannot
        be recorded is exit 1, loudly. The result carries its intent's id (`pending`)."""
        if ledger is None or not plan.pending or result.exit_code == ExitCode.COMPONENT_MISSING:
            return
        import sqlite3

        from op_dbus.engine.record import record_apply
        from op_dbus.ledger.store import LedgerError

        try:
            record_apply(
                ledger,
                plan=plan,
                result=result,
                desired=desired,
                mode=mode,
                actor=actor,
                apply_id=pending.apply_id if pending else uuid.uuid4().hex,
                recovers=recovers,
            )
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


def describe_change(change: PendingChange) -> str:
    what = "the try" if change.deadline is not None else "the apply"
    return f"{what} {change.apply_id[:12]} ({change.actor}, started {change.started})"


def interrupted_message(change: PendingChange) -> str:
    """What to say of an apply killed before its result was recorded."""
    return (
        f"{describe_change(change)} was interrupted before its result was recorded, so the "
        "host may have been half-changed then. `op-dbus rollback` restores the checkpoint "
        f"taken before it (kept in the data dir, pending/{change.apply_id}.json); "
        "`op-dbus confirm` keeps the host as it is and drops that checkpoint"
    )
