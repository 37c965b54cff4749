"""Turn a plan into batches: one `plugin.apply()` call each, in dependency order."""

from __future__ import annotations

from dataclasses import dataclass

from op_dbus.engine.plan import Plan
from op_dbus.plugins.base import Action, ActionKind
from op_dbus.registry import REGISTRY, Registry

Step = tuple[str, str]
"""(section, "upserts" | "deletes" | "whole"): a part of one section's actions."""


@dataclass
class Batch:
    plugin: str
    actions: list[Action]


def steps_in_order(registry: Registry) -> list[Step]:
    """The order the parts of each section's actions run in.

    The rule (architecture.md): a section's creates and modifies run after those of every
    section it comes `after`, its deletes before theirs. A `one_batch` section (net: one
    OVSDB transaction) runs whole, so it waits for both: the creates of the sections before
    it (systemd: units the network needs) and the deletes of those after it (lxc: containers
    leave their bridges). Among the steps free to run, creates and modifies in dependency
    order come first, then deletes in reverse: for systemd -> net -> lxc with net whole that
    is systemd upserts, lxc deletes, net whole, lxc upserts, systemd deletes.
    """
    order = registry.order

    def step(name: str, part: str) -> Step:
        return (name, "whole") if registry.by_name[name].one_batch else (name, part)

    preferred = list(
        dict.fromkeys(
            [step(n, "upserts") for n in order] + [step(n, "deletes") for n in reversed(order)]
        )
    )
    needs: dict[Step, set[Step]] = {s: set() for s in preferred}
    for name in order:
        for earlier in registry.depends_on(name):
            needs[step(name, "upserts")].add(step(earlier, "upserts"))
            needs[step(earlier, "deletes")].add(step(name, "deletes"))
    done: list[Step] = []
    while len(done) < len(preferred):
        ready = next(s for s in preferred if s not in done and needs[s] <= set(done))
        done.append(ready)
    return done


def schedule(plan: Plan, registry: Registry = REGISTRY) -> list[Batch]:
    """Batches in the order they must run (steps_in_order). Batches keep each plugin's own
    action order, empty ones are dropped, and neighbouring batches of the same plugin merge
    back into that plugin's own order (one apply call)."""
    actions = {entry.name: entry.actions for entry in plan.plugins}

    def part(name: str, which: str) -> list[Action]:
        own = actions.get(name, [])
        if which == "whole":
            return list(own)
        return [a for a in own if (a.kind == ActionKind.DELETE) == (which == "deletes")]

    batches: list[Batch] = []
    for name, which in steps_in_order(registry):
        batch = Batch(name, part(name, which))
        if not batch.actions:
            continue
        if batches and batches[-1].plugin == batch.plugin:
            merged = {id(a) for a in batches[-1].actions + batch.actions}
            own = [a for a in actions[batch.plugin] if id(a) in merged]
            batches[-1] = Batch(batch.plugin, own)
        else:
            batches.append(batch)
    return batches
