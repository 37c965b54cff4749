"""Write one apply into the ledger: an intent before the host is touched, then the result (a
header entry and one entry per action that ran), all under one `apply_id`.

The intent (plan and checkpoint digests, actor) is appended and signed before the first
action, so an apply killed half-way leaves an intent without a result. Action entries carry
each action's before and after values (bounded: `MAX_VALUE_BYTES` of canonical JSON each,
larger ones are cut and marked) next to their digests, so `ledger show` says what changed.
Failed and rolled-back applies are recorded as faithfully as successful ones.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from op_dbus.ledger.entries import canonical, digest, now_text

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


MAX_VALUE_BYTES = 64 * 1024
"""The most of one before/after value an entry copies (canonical JSON bytes)."""


def bounded_value(value: Any) -> Any:
    """`value` itself when small enough, else its cut canonical text, marked as cut."""
    if value is None:
        return None
    text = canonical(value)
    if len(text) <= MAX_VALUE_BYTES:
        return value
    cut = text[:MAX_VALUE_BYTES].decode(errors="ignore")
    return {"truncated": True, "bytes": len(text), "canonical_prefix": cut}


def record_intent(
    ledger: Ledger,
    *,
    apply_id: str,
    plan: Plan,
    checkpoints: Mapping[str, Section],
    mode: str,
    actor: str,
    deadline: float | None = None,
) -> None:
    """Append (and sign) what is about to change, before the first action runs."""
    entry: dict[str, Any] = {
        "type": "intent",
        "apply_id": apply_id,
        "time": now_text(),
        "actor": actor,
        "mode": str(mode),
        "plan_digest": digest(_plan_value(plan)),
        "checkpoint_digest": digest(dict(checkpoints)),
        "actions": sum(len(p.actions) for p in plan.plugins),
    }
    if deadline is not None:
        entry["try_deadline"] = round(deadline, 3)
    ledger.append([entry])


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
        "before": bounded_value(action.before),
        "after": bounded_value(action.after),
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
    apply_id: str,
    recovers: str | None = None,
) -> None:
    """Append the apply's result (header, applied, failed, rollback actions) and sign a
    checkpoint. `recovers`: the id of the try or interrupted apply this one rolled back."""
    base = {"apply_id": apply_id, "time": now_text()}
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
    if recovers is not None:
        header["recovers"] = recovers
    entries = [header]
    entries += [_action_entry(base, a, "apply", "applied", None) for a in result.applied]
    if result.failed is not None:
        entries.append(_action_entry(base, result.failed, "apply", "failed", result.error))
    entries += [_action_entry(base, a, "rollback", "applied", None) for a in result.rolled_back]
    ledger.append(entries)
