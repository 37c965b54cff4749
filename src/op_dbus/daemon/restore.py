"""Put sections back to a checkpoint for a try that was not confirmed.

The engine's own restore (the rollback after a failure) does the work; this turns what it
did into a plan and a result, so the restore is recorded in the ledger like any apply.
"""

from __future__ import annotations

from collections.abc import Mapping

from op_dbus.engine.apply import ApplyResult, describe_left, restore
from op_dbus.engine.plan import Plan
from op_dbus.exitcodes import ExitCode
from op_dbus.plugins.base import Plugin, Section


async def restore_checkpoints(
    plugins: Mapping[str, Plugin | None], checkpoints: dict[str, Section]
) -> tuple[Plan, ApplyResult]:
    """Restore every checkpointed section; the plan of restoring actions and the outcome
    (exit 0: the host equals the checkpoints again, 5: something is left, named)."""
    usable = {name: plugin for name, plugin in plugins.items() if plugin is not None}
    restoration = await restore(
        {name: cp for name, cp in checkpoints.items() if name in usable}, usable
    )
    result = ApplyResult(ExitCode.OK, applied=restoration.done)
    result.error = "; ".join(f"{n}: {e}" for n, e in restoration.errors.items()) or None
    if restoration.left:
        result.exit_code = ExitCode.ROLLBACK_FAILED
        result.rollback_left = restoration.left
        result.message = f"rollback incomplete, left: {describe_left(restoration.left)}"
    else:
        result.message = f"rolled back {len(result.applied)} action(s) to the checkpoint"
    return restoration.plan, result
