"""The plan: every plugin's current state and the actions that reach the desired state.

A plan also records why a section cannot be handled (plugin not built yet, backend
unreachable, query failed, or the file asks for what this host rules out: "refused"), so
`diff` can show it and `apply` can refuse instead of pretending the host converged.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from op_dbus.errors import Refused, describe_error
from op_dbus.ledger.entries import canonical
from op_dbus.plugins.base import Action, Plugin, Section
from op_dbus.registry import ORDER

PlanStatus = Literal["ready", "unavailable", "error", "refused"]
Acknowledge = bool | Iterable[str]
"""Consent to dangerous actions: True for all of them (`--yes`, the daemon's own state
file), else the `describe()` of each one consented to (what the plan's `dangerous` lists)."""


@dataclass
class PluginPlan:
    """One section's plan. `current` (the query before apply) is the rollback checkpoint."""

    name: str
    status: PlanStatus
    reason: str
    current: Section | None
    desired: Section
    actions: list[Action] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "reason": self.reason,
            "actions": [a.to_json() for a in self.actions],
        }


@dataclass
class Plan:
    """The per-plugin plans of one state file, in dependency order."""

    plugins: list[PluginPlan]

    @property
    def actions(self) -> list[Action]:
        return [action for entry in self.plugins for action in entry.actions]

    @property
    def pending(self) -> bool:
        return any(entry.actions for entry in self.plugins)

    @property
    def dangerous(self) -> list[Action]:
        """Actions that cut connectivity or destroy work: confirmed before they run."""
        return [action for action in self.actions if action.dangerous]

    def unacknowledged(self, acknowledge: Acknowledge) -> list[str]:
        """The dangerous actions (as `Action.describe()`) that `acknowledge` does not cover."""
        if acknowledge is True:
            return []
        given = set(acknowledge or ())
        return [a.describe() for a in self.dangerous if a.describe() not in given]

    @property
    def blocked(self) -> list[PluginPlan]:
        """Sections that could not be planned; applying them must be refused."""
        return [entry for entry in self.plugins if entry.status != "ready"]

    @property
    def refused(self) -> list[PluginPlan]:
        """Sections a plugin refused to plan (the request is at fault: exit 2, not 6)."""
        return [entry for entry in self.plugins if entry.status == "refused"]

    @property
    def revision(self) -> str:
        """A digest of the readings this plan was made from: a later plan of the same state
        with another revision means the host changed in between (a stale plan)."""
        readings = {entry.name: [entry.status, entry.current] for entry in self.plugins}
        return hashlib.sha256(canonical(readings)).hexdigest()

    def get(self, name: str) -> PluginPlan | None:
        return next((entry for entry in self.plugins if entry.name == name), None)

    def summary(self) -> dict[str, Any]:
        counts = {"create": 0, "modify": 0, "delete": 0}
        for action in self.actions:
            counts[str(action.kind)] += 1
        return {
            **counts,
            "dangerous": len(self.dangerous),
            "blocked": [p.name for p in self.blocked],
            "refused": [p.name for p in self.refused],
        }

    def to_json(self) -> dict[str, Any]:
        """The one JSON form of a plan, on every surface (CLI --json, D-Bus, MCP)."""
        return {
            "pending": self.pending,
            "revision": self.revision,
            "summary": self.summary(),
            "dangerous": [a.describe() for a in self.dangerous],
            "plugins": [p.to_json() for p in self.plugins],
        }


async def _plan_one(
    name: str,
    desired: Section,
    plugin: Plugin,
    document: Mapping[str, Section],
    prune: bool,
) -> PluginPlan:
    try:
        availability = await plugin.available()
    except Exception as exc:  # the contract says never raises; a broken plugin must not crash plan
        return PluginPlan(name, "unavailable", describe_error(exc), None, desired)
    if not availability.ok:
        return PluginPlan(name, "unavailable", availability.reason, None, desired)
    try:
        current = await plugin.query(desired)
    except Exception as exc:
        return PluginPlan(name, "error", f"query failed: {describe_error(exc)}", None, desired)
    try:
        await plugin.check(current, desired, document)
        # a worker thread: diffing a large document must not hold up the daemon's event loop
        actions = await asyncio.to_thread(plugin.diff, current, desired, prune=prune)
        actions = await plugin.assess(current, actions) if actions else actions
    except Refused as refusal:
        return PluginPlan(name, "refused", refusal.message, None, desired)
    except Exception as exc:
        return PluginPlan(name, "error", f"plan failed: {describe_error(exc)}", None, desired)
    return PluginPlan(name, "ready", "", current, desired, list(actions))


async def make_plan(
    desired: dict[str, Section], plugins: Mapping[str, Plugin], *, prune: bool = False
) -> Plan:
    """Query, diff and assess every declared section; plugins run concurrently (separate
    backends). With `prune` the document is authoritative (plugins remove owned resources
    it does not list). Sections the state file does not declare are not planned at all:
    op-dbus leaves them alone.
    """
    unknown = sorted(set(desired) - set(ORDER))
    if unknown:
        raise ValueError(f"unknown plugin section(s): {', '.join(unknown)}")
    names = [name for name in ORDER if name in desired]
    entries = await asyncio.gather(
        *(_plan_one(name, desired[name], plugins[name], desired, prune) for name in names)
    )
    return Plan(list(entries))
