"""Put sections back to a checkpoint exactly: what a try that was not confirmed needs.

The same rollback the engine does after a failure (`diff(now, checkpoint, exhaustive=True)`,
scheduled like any plan, carried on past a failed batch), for a change that succeeded.
The final word is a fresh query compared with the checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping

from op_dbus.engine.apply import ApplyResult
from op_dbus.engine.order import schedule
from op_dbus.engine.plan import Plan, PluginPlan, describe_error
from op_dbus.exitcodes import ExitCode
from op_dbus.plugins.base import Action, ApplyError, Plugin, Section


async def restore_checkpoints(
    plugins: Mapping[str, Plugin | None], checkpoints: dict[str, Section]
) -> tuple[Plan, ApplyResult]:
    """Restore every checkpointed section; the plan of restoring actions and the outcome
    (exit 0: the host equals the checkpoints again, 5: something is left, named)."""
    plan = Plan([])
    for name, checkpoint in checkpoints.items():
        plugin = plugins.get(name)
        if plugin is None:
            continue
        now = await plugin.query(checkpoint)
        actions = plugin.diff(now, checkpoint, exhaustive=True)
        plan.plugins.append(PluginPlan(name, "ready", "", now, checkpoint, list(actions)))
    result = ApplyResult(ExitCode.OK)
    errors = []
    for batch in schedule(plan):
        plugin = plugins[batch.plugin]
        assert plugin is not None
        try:
            done = await plugin.apply(batch.actions)
        except ApplyError as exc:
            done, result.failed = exc.done, exc.failed
            errors.append(f"{exc.failed.describe()}: {exc.reason}")
        except Exception as exc:
            done = []
            errors.append(f"{batch.plugin}: {describe_error(exc)}")
        result.applied += done
    left: list[Action] = []
    for entry in plan.plugins:
        plugin = plugins[entry.name]
        assert plugin is not None
        left += plugin.diff(await plugin.query(), checkpoints[entry.name], exhaustive=True)
    result.error = "; ".join(errors) or None
    if left:
        result.exit_code = ExitCode.ROLLBACK_FAILED
        result.message = "rollback incomplete, left: " + ", ".join(a.describe() for a in left)
    else:
        result.message = f"rolled back {len(result.applied)} action(s) to the checkpoint"
    return plan, result
