"""Try and confirm (like `netplan try`): apply, then roll back unless confirmed in time.

For admins changing the very link they are logged in over: if the change cuts them off, they
cannot confirm, and the host goes back by itself. The checkpoint is each touched section's
state as the try's plan read it (like the engine's own rollback); the rollback restores it
exactly (`diff(now, checkpoint, exhaustive=True)`) and the daemon enforces the state it
enforced before the try again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from op_dbus.daemon.reconcile import ACTOR, Reconciler
from op_dbus.engine.apply import ApplyResult
from op_dbus.exitcodes import ExitCode
from op_dbus.plugins.base import Section

log = logging.getLogger("op_dbus.daemon")


@dataclass
class _Pending:
    previous: dict[str, Section]
    checkpoints: dict[str, Section]
    mode: str
    deadline: float
    """time.time() when it is rolled back unless confirmed"""


class TryAndConfirm:
    def __init__(self, reconciler: Reconciler) -> None:
        self.reconciler = reconciler
        self._pending: _Pending | None = None
        self._timer: asyncio.Task[None] | None = None
        """The pending try's timer; once it fires, the rollback it runs."""
        self._starting = asyncio.Lock()
        """One start at a time: a second try must see the first one pending, and be refused."""

    @property
    def pending(self) -> bool:
        return self._pending is not None

    def pending_json(self) -> dict[str, Any] | None:
        """The waiting try's deadline (UTC) and the whole seconds left, or None."""
        if self._pending is None:
            return None
        deadline = self._pending.deadline
        return {
            "deadline": datetime.fromtimestamp(deadline, UTC).isoformat(timespec="seconds"),
            "seconds_left": max(0, round(deadline - time.time())),
        }

    async def start(
        self, sections: dict[str, Section], seconds: float, *, mode: str, actor: str
    ) -> ApplyResult:
        """Apply `sections`; unless `confirm()` comes within `seconds`, roll back.

        A try while another is pending confirms nothing: it is refused, naming the pending
        one's deadline (the refused one holds no timer).
        """
        async with self._starting:
            if (pending := self.pending_json()) is not None:
                return ApplyResult(
                    ExitCode.INVALID_INPUT,
                    message=(
                        "refused, nothing applied: another try is waiting for its confirmation "
                        f"(rolled back at {pending['deadline']}, in {pending['seconds_left']} s, "
                        "unless confirmed)"
                    ),
                )
            previous = dict(self.reconciler.desired)
            plan, result = await self.reconciler.apply_desired(sections, mode=mode, actor=actor)
            if result.exit_code != ExitCode.OK or not result.applied:
                return result  # failed (and rolled back by the engine), or nothing to confirm
            checkpoints = {
                e.name: e.current for e in plan.plugins if e.actions and e.current is not None
            }
            self._pending = _Pending(previous, checkpoints, mode, time.time() + seconds)
            self._timer = asyncio.create_task(self._expire(seconds))
        log.warning("try: applied; rolling back in %g s unless confirmed", seconds)
        result.message += f"; confirm within {seconds:g} s or it is rolled back"
        return result

    def confirm(self) -> bool:
        """Keep the tried state; False when no try is waiting."""
        pending, self._pending = self._pending, None
        if pending is None:
            return False
        assert self._timer is not None
        self._timer.cancel()
        log.info("try: confirmed")
        return True

    async def _expire(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        await self.rollback("not confirmed in time")

    async def rollback(self, why: str) -> ApplyResult | None:
        pending, self._pending = self._pending, None
        if pending is None:
            return None
        log.warning("try: %s; rolling back", why)
        return await self.reconciler.restore(
            pending.checkpoints,
            pending.previous,
            mode=pending.mode,
            actor=f"{ACTOR}:try-rollback",
        )

    async def shutdown(self) -> None:
        """The daemon stops: an unconfirmed try is rolled back (the safe side)."""
        if self._pending is not None:  # its timer still sleeps: rollback() has not begun
            assert self._timer is not None
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
            await self.rollback("the daemon stops before the confirmation")
        elif self._timer is not None and not self._timer.done():  # a rollback is running
            await self._timer
