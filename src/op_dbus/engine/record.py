"""Write one apply into the ledger: a header entry, then one entry per action that ran.

Entries carry digests of the desired state, the plan and each action's before/after rather
than the values themselves: the ledger proves what changed without copying host secrets.
Failed and rolled-back applies are recorded as faithfully as successful ones.
"""

from __future__ import annotations

import os
import shlex
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from op_dbus.ledger.entries import digest, now_text

if TYPE_CHECKING:
    from op_dbus.engine.apply import ApplyResult
    from op_dbus.engine.plan import Plan
    from op_dbus.ledger.store import Ledger
    from op_dbus.plugins.base import Action, Section


def command_actor(argv: Sequence[str]) -> str:
    """Who applied: the real uid and the command line, e.g. `uid=0 command=op-dbus apply x`."""
    return f"uid={os.getuid()} command={shlex.join(argv)}"


def _plan_value(plan: Plan) -> list[dict[str, Any]]:
    return [p.to_json() for p in plan.plugins]


def _action_entry(
    base: dict[str, Any], action: Action, phase: str, outcome: str, error: str | None
) -> dict[str, Any]:
    return {
        **base,
        "type": "action",
        "phase": phase,
        "plugin": action.plugin,
        "kind": str(action.kind),
        "resource": action.resource,
        "before_digest": digest(action.before),
        "after_digest": digest(action.after),
        "result": outcome,
        "error": error,
    }


def record_apply(
    ledger: Ledger,
    *,
    plan: Plan,
    result: ApplyResult,
    desired: Mapping[str, Section],
    mode: str,
    actor: str,
) -> None:
    """Append the apply (header, applied, failed, rollback actions) and sign a checkpoint."""
    base = {
        "apply_id": uuid.uuid4().hex,
        "time": now_text(),
    }
    left = {
        name: rest if isinstance(rest, str) else [a.describe() for a in rest]
        for name, rest in result.rollback_left.items()
    }
    header = {
        **base,
        "type": "apply",
        "actor": actor,
        "mode": str(mode),
        "desired_digest": digest(dict(desired)),
        "plan_digest": digest(_plan_value(plan)),
        "result": {
            "exit_code": int(result.exit_code),
            "message": result.message,
            "error": result.error,
            "applied": len(result.applied),
            "rolled_back": len(result.rolled_back),
            "rollback_left": left,
        },
    }
    entries = [header]
    entries += [_action_entry(base, a, "apply", "applied", None) for a in result.applied]
    if result.failed is not None:
        entries.append(_action_entry(base, result.failed, "apply", "failed", result.error))
    entries += [_action_entry(base, a, "rollback", "applied", None) for a in result.rolled_back]
    ledger.append(entries)
