"""Turn a plan into batches: one `plugin.apply()` call each, in dependency order."""

from __future__ import annotations

from dataclasses import dataclass

from op_dbus.engine.plan import Plan
from op_dbus.plugins import PLUGIN_ORDER
from op_dbus.plugins.base import Action, ActionKind

PIVOT = "net"
"""The plugin whose actions always form one batch (all OVS changes are one OVSDB transaction)."""


@dataclass
class Batch:
    plugin: str
    actions: list[Action]


def schedule(plan: Plan) -> list[Batch]:
    """Batches in the order they must run.

    The rule (architecture.md) is: creates and modifies in PLUGIN_ORDER, deletes in reverse.
    Applied naively that splits the pivot's actions in two, but its changes must land in one
    transaction, so the pivot runs once, whole, ordering its own deletes before its creates.
    Around it, each side keeps the rule:

    1. creates + modifies of plugins before the pivot (systemd: units the network needs),
    2. deletes of plugins after the pivot, in reverse (lxc: containers leave their bridges),
    3. the pivot's whole batch (net),
    4. creates + modifies of plugins after the pivot (lxc: containers join the new bridges),
    5. deletes of plugins before the pivot, in reverse (systemd: units nothing needs anymore).

    Batches keep each plugin's own action order, empty ones are dropped, and neighbouring
    batches of the same plugin merge back into that plugin's own order (one apply call).
    """
    actions = {entry.name: entry.actions for entry in plan.plugins}
    pivot_at = PLUGIN_ORDER.index(PIVOT)
    before, after = PLUGIN_ORDER[:pivot_at], PLUGIN_ORDER[pivot_at + 1 :]

    def deletes(name: str) -> list[Action]:
        return [a for a in actions.get(name, []) if a.kind == ActionKind.DELETE]

    def upserts(name: str) -> list[Action]:
        return [a for a in actions.get(name, []) if a.kind != ActionKind.DELETE]

    candidates = [
        *(Batch(name, upserts(name)) for name in before),
        *(Batch(name, deletes(name)) for name in reversed(after)),
        Batch(PIVOT, list(actions.get(PIVOT, []))),
        *(Batch(name, upserts(name)) for name in after),
        *(Batch(name, deletes(name)) for name in reversed(before)),
    ]
    batches: list[Batch] = []
    for batch in candidates:
        if not batch.actions:
            continue
        if batches and batches[-1].plugin == batch.plugin:
            merged = {id(a) for a in batches[-1].actions + batch.actions}
            own = [a for a in actions[batch.plugin] if id(a) in merged]
            batches[-1] = Batch(batch.plugin, own)
        else:
            batches.append(batch)
    return batches
