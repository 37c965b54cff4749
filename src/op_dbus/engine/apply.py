"""Apply a plan as a checkpointed transaction: run the batches, verify, roll back on failure.

The checkpoint is each plugin's `current` from the plan (the query taken before apply), so
rollback needs nothing from the plugins but the contract: query the host now and apply
`diff(now, checkpoint, exhaustive=True)`. The final word on whether the host is back is a
fresh query compared with the checkpoint, never the plugins' own report of what they did.
The caller owns the plugins: nothing here closes them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from op_dbus.engine.interrupts import Interrupts
from op_dbus.engine.order import schedule
from op_dbus.engine.plan import Plan, PluginPlan
from op_dbus.engine.verify import until_settled, verify_state
from op_dbus.errors import describe_error
from op_dbus.exitcodes import ExitCode
from op_dbus.plugins.base import Action, ApplyError, Mismatch, Plugin, Section, copy_section
from op_dbus.registry import ORDER


class ProgressKind(StrEnum):
    BATCH = "batch"  # a batch starts: detail says how many actions
    STARTED = "started"  # one action starts (as its plugin reports it)
    ACTION = "action"  # one action took effect
    VERIFY = "verify"  # a plugin's verification: detail "started", then "<n> mismatches"
    ROLLBACK = "rollback"  # starts (plugin "", detail: why), then per plugin "restored"/"left"


@dataclass(frozen=True)
class ProgressEvent:
    """What the engine is doing, for a progress display. `rollback` marks rollback work."""

    kind: ProgressKind
    plugin: str
    action: Action | None = None
    detail: str = ""
    rollback: bool = False


Progress = Callable[[ProgressEvent], None]


@dataclass
class ApplyResult:
    """The outcome. `applied` took effect (then were undone if the code is 4 or 5);
    `rolled_back` are the rollback's own actions that took effect, for the ledger."""

    exit_code: ExitCode
    applied: list[Action] = field(default_factory=list)
    failed: Action | None = None
    error: str | None = None
    mismatches: dict[str, list[Mismatch]] = field(default_factory=dict)
    rollback_left: dict[str, list[Action] | str] = field(default_factory=dict)
    message: str = ""
    rolled_back: list[Action] = field(default_factory=list)
    action_seconds: list[float] = field(default_factory=list)
    """Per applied action (same order): seconds from its start to when it was done. A plugin
    that applies a batch at once reports its actions done together: each then counts from
    the batch's start."""
    seconds: float = 0.0
    """The whole apply: batches, verification and any rollback."""
    probes: list[dict[str, Any]] = field(default_factory=list)
    """The probes' checks after a change that touched connectivity (engine/probe.py)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "exit_code": int(self.exit_code),
            "message": self.message,
            "applied": [a.to_json() for a in self.applied],
            "failed": self.failed.to_json() if self.failed else None,
            "error": self.error,
            "mismatches": {n: [m.to_json() for m in ms] for n, ms in self.mismatches.items()},
            "rollback_left": {
                name: left if isinstance(left, str) else [a.to_json() for a in left]
                for name, left in self.rollback_left.items()
            },
            "rolled_back": [a.to_json() for a in self.rolled_back],
            "action_seconds": [round(t, 3) for t in self.action_seconds],
            "seconds": round(self.seconds, 3),
            "probes": self.probes,
        }


def _ignore(event: ProgressEvent) -> None:
    """Default progress sink."""


class StepTimes:
    """One batch's actions as its plugin reports them: each start and end becomes a
    ProgressEvent as it happens, and its time from start to end is kept. An action the
    plugin did not report counts from the batch's start to its end."""

    def __init__(self, plugin: str, emit: Progress) -> None:
        self.plugin = plugin
        self.emit = emit
        self.began = time.monotonic()
        self.started: dict[int, float] = {}
        self.ended: dict[int, float] = {}

    def report(self, action: Action, done: bool) -> None:
        times = self.ended if done else self.started
        if id(action) in times:
            return
        times[id(action)] = time.monotonic()
        kind = ProgressKind.ACTION if done else ProgressKind.STARTED
        self.emit(ProgressEvent(kind, self.plugin, action))

    def seconds(self, action: Action) -> float:
        """Its time; an action done but never reported is reported now."""
        self.report(action, True)
        return self.ended[id(action)] - self.started.get(id(action), self.began)


async def apply_plan(
    plan: Plan,
    plugins: Mapping[str, Plugin],
    *,
    verify_attempts: int = 5,
    verify_delay: float = 0.2,
    on_progress: Progress | None = None,
    interrupts: Interrupts | None = None,
    repair: bool = False,
    checkpoints: Mapping[str, Section] | None = None,
) -> ApplyResult:
    """Apply `plan`; exit codes: 0 done (or nothing to do), 4 rolled back, 5 rollback failed,
    2 a plugin refused the request, 6 a declared section cannot be handled (nothing touched
    in either case). A signal noted in `interrupts` ends the apply after its batch in flight
    and rolls back (4); a second one stops that rollback after its batch in flight (5).

    With `repair` (the daemon putting back drift), what every action did stands and a verify
    that still finds differences is no failure: another actor changed the host again
    meanwhile, which is new drift to plan for (exit 3, nothing rolled back). Only an action
    that failed rolls back. `checkpoints`: the copies of the plan's readings the caller
    keeps (the Host's journalled ones), so a large section is not copied twice; by default
    they are copied here."""
    began = time.monotonic()
    result = await _apply_plan(
        plan,
        plugins,
        verify_attempts,
        verify_delay,
        on_progress or _ignore,
        interrupts or Interrupts(),
        repair,
        checkpoints,
    )
    result.seconds = time.monotonic() - began
    return result


def checkpoints_of(plan: Plan) -> dict[str, Section]:
    """Copies of what the plan read of each section it changes: what a rollback restores."""
    return {e.name: copy_section(e.current or {}) for e in plan.plugins if e.actions}


async def _apply_plan(
    plan: Plan,
    plugins: Mapping[str, Plugin],
    verify_attempts: int,
    verify_delay: float,
    emit: Progress,
    interrupts: Interrupts,
    repair: bool,
    checkpoints: Mapping[str, Section] | None,
) -> ApplyResult:
    if plan.blocked:
        reasons = "; ".join(f"{e.name}: {e.reason or e.status}" for e in plan.blocked)
        code = ExitCode.INVALID_INPUT if plan.refused else ExitCode.COMPONENT_MISSING
        return ApplyResult(code, message=f"refusing to apply, nothing changed: {reasons}")
    if not plan.pending:
        return ApplyResult(ExitCode.OK, message="nothing to do: the host matches the state")
    if checkpoints is None:
        checkpoints = checkpoints_of(plan)
    missing = sorted(set(checkpoints) - set(plugins))
    if missing:
        raise ValueError(f"no plugin given for planned section(s): {', '.join(missing)}")

    result = ApplyResult(ExitCode.OK)
    touched = await _run_batches(plan, plugins, result, emit, interrupts)
    if result.error is None:
        desired = {e.name: e.desired for e in plan.plugins if e.actions}
        verified = await _verify(desired, plugins, result, verify_attempts, verify_delay, emit)
        if verified and interrupts.first is None:
            result.message = f"applied {len(result.applied)} action(s), verified"
            return result
        if verified:  # the signal came while verifying: undo it all the same
            result.error = f"interrupted by {interrupts.first}"
        elif repair and interrupts.first is None:
            result.exit_code = ExitCode.CHANGES_PENDING
            result.message = (
                f"applied {len(result.applied)} action(s); the host changed again meanwhile"
                f" ({result.error}): planning anew"
            )
            return result

    what = (
        result.error or ""
        if result.failed is None
        else f"{result.failed.describe()}: {result.error}"
    )
    emit(ProgressEvent(ProgressKind.ROLLBACK, "", detail=what, rollback=True))
    restoration = await restore(
        {n: checkpoints[n] for n in touched},
        plugins,
        emit,
        stop=lambda: interrupts.stop,
        settle_delay=verify_delay,
    )
    result.rolled_back = restoration.done
    result.rollback_left = restoration.left
    if not result.rollback_left:
        result.exit_code = ExitCode.ROLLED_BACK
        result.message = f"apply failed ({what}); rolled back, the host is as before"
        return result
    result.exit_code = ExitCode.ROLLBACK_FAILED
    if restoration.stopped:
        result.message = (
            f"apply failed ({what}); the rollback was stopped by a second interrupt."
            f" Left to restore the checkpoint: {describe_left(result.rollback_left)}"
        )
        return result
    errors = "".join(
        f" (rollback error: {name}: {err})" for name, err in restoration.errors.items()
    )
    result.message = (
        f"apply failed ({what}); rollback failed too, the host state is unknown."
        f" Left to restore the checkpoint: {describe_left(result.rollback_left)}{errors}"
    )
    return result


async def _run_batches(
    plan: Plan,
    plugins: Mapping[str, Plugin],
    result: ApplyResult,
    emit: Progress,
    interrupts: Interrupts,
) -> list[str]:
    """Run the scheduled batches until one fails or a signal comes (noted in `result`);
    return plugins touched.

    The failing batch's plugin counts as touched: it may have changed something before failing.
    """
    touched: list[str] = []
    for batch in schedule(plan):
        if interrupts.first is not None:
            result.error = f"interrupted by {interrupts.first}"
            break
        if batch.plugin not in touched:
            touched.append(batch.plugin)
        emit(ProgressEvent(ProgressKind.BATCH, batch.plugin, detail=f"{len(batch.actions)}"))
        steps = StepTimes(batch.plugin, emit)
        try:
            done = await plugins[batch.plugin].apply(batch.actions, steps.report)
        except ApplyError as exc:
            done, result.failed, result.error = exc.done, exc.failed, exc.reason
        except Exception as exc:
            done, result.error = [], f"{batch.plugin} apply failed: {describe_error(exc)}"
        for action in done:
            result.applied.append(action)
            result.action_seconds.append(steps.seconds(action))
        if result.error is not None:
            break
    else:
        if interrupts.first is not None:  # during the last batch: undo it all the same
            result.error = f"interrupted by {interrupts.first}"
    return touched


async def _verify(
    desired: dict[str, Section],
    plugins: Mapping[str, Plugin],
    result: ApplyResult,
    attempts: int,
    delay: float,
    emit: Progress,
) -> bool:
    """Verify the applied sections; on lasting mismatches note them in `result`, return False."""
    for name in desired:
        emit(ProgressEvent(ProgressKind.VERIFY, name, detail="started"))
    result.mismatches = await verify_state(desired, plugins, attempts=attempts, delay=delay)
    for name in desired:
        found = result.mismatches.get(name, [])
        emit(ProgressEvent(ProgressKind.VERIFY, name, detail=f"{len(found)} mismatches"))
    if not result.mismatches:
        return True
    lines = [f"{n} {m.describe()}" for n, items in result.mismatches.items() for m in items]
    result.error = f"verify failed after {attempts} attempt(s): {'; '.join(lines)}"
    return False


def describe_left(left: Mapping[str, list[Action] | str]) -> str:
    """What a restore left undone, per plugin: the actions still needed, or why unreadable."""
    return "; ".join(
        f"{name}: {rest}"
        if isinstance(rest, str)
        else f"{name}: {', '.join(a.describe() for a in rest)}"
        for name, rest in left.items()
    )


async def _restore_diff(plugin: Plugin, checkpoint: Section) -> list[Action] | str:
    """The actions that take `plugin` from the host's state now back to `checkpoint`."""
    try:
        return list(plugin.diff(await plugin.query(checkpoint), checkpoint, exhaustive=True))
    except Exception as exc:
        return f"query failed: {describe_error(exc)}"


@dataclass
class Restoration:
    """What putting sections back to their checkpoints did: the restoring plan, the actions
    that took effect, what still differs afterwards per plugin (actions, or why it could not
    be read), and the apply errors met on the way per plugin."""

    plan: Plan
    done: list[Action] = field(default_factory=list)
    left: dict[str, list[Action] | str] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    stopped: bool = False
    """A second interrupt stopped it before its last batch."""


def _never() -> bool:
    return False


async def restore(
    checkpoints: dict[str, Section],
    plugins: Mapping[str, Plugin],
    emit: Progress = _ignore,
    *,
    stop: Callable[[], bool] = _never,
    settle_delay: float = 0.2,
) -> Restoration:
    """Put every checkpointed section back: rollback after a failure, and an unconfirmed try.

    The restoring actions are scheduled like any plan, which is the reverse of how the
    change ran (undoing a create is a delete, and deletes run in reverse order). It keeps
    going past a failed batch, to restore as much as it can, and then re-reads: the final
    word is a fresh query compared with the checkpoint. `stop()` true between two batches
    ends it early (a second interrupt); the re-read still runs and names what is left,
    retried like a verify (`settle_delay` first) while something differs.
    """
    names = [name for name in ORDER if name in checkpoints]
    diffs = await asyncio.gather(*(_restore_diff(plugins[n], checkpoints[n]) for n in names))
    restoration = Restoration(Plan([]))
    for name, diff in zip(names, diffs, strict=True):
        if isinstance(diff, str):
            restoration.left[name] = diff
        else:
            entry = PluginPlan(name, "ready", "", None, checkpoints[name], diff)
            restoration.plan.plugins.append(entry)

    for batch in schedule(restoration.plan):
        if stop():
            restoration.stopped = True
            break
        emit(
            ProgressEvent(
                ProgressKind.BATCH, batch.plugin, detail=f"{len(batch.actions)}", rollback=True
            )
        )
        try:
            done = await plugins[batch.plugin].apply(batch.actions)
        except ApplyError as exc:
            done = exc.done
            restoration.errors[batch.plugin] = f"{exc.failed.describe()}: {exc.reason}"
        except Exception as exc:
            done, restoration.errors[batch.plugin] = [], describe_error(exc)
        for action in done:
            restoration.done.append(action)
            emit(ProgressEvent(ProgressKind.ACTION, batch.plugin, action, rollback=True))

    checked = [entry.name for entry in restoration.plan.plugins]

    async def still_differs() -> dict[str, list[Action] | str]:
        found = await asyncio.gather(*(_restore_diff(plugins[n], checkpoints[n]) for n in checked))
        return {name: rest for name, rest in zip(checked, found, strict=True) if rest}

    left_after = await until_settled(still_differs, delay=settle_delay)
    for name in checked:
        if name in left_after:
            restoration.left[name] = left_after[name]
        emit(
            ProgressEvent(
                ProgressKind.ROLLBACK,
                name,
                detail="left" if name in left_after else "restored",
                rollback=True,
            )
        )
    left = restoration.left
    restoration.left = {name: left[name] for name in ORDER if name in left}
    return restoration
