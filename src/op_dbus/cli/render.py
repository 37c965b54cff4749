"""Human and JSON renderings of plans and apply results (terraform-style plan colours)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from rich.markup import escape

if TYPE_CHECKING:
    from rich.console import Console

    from op_dbus.engine.plan import Plan, PluginPlan
    from op_dbus.plugins.base import Mismatch

SIGNS = {"create": ("+", "green"), "modify": ("~", "yellow"), "delete": ("-", "red")}
STATUS_TEXT = {
    "not_implemented": "not implemented yet",
    "unavailable": "backend unavailable",
    "error": "could not be read",
}


def plan_summary(plan: Plan) -> dict[str, Any]:
    counts = {kind: 0 for kind in SIGNS}
    for action in plan.actions:
        counts[str(action.kind)] += 1
    return {**counts, "blocked": [p.name for p in plan.blocked]}


def plan_to_json(plan: Plan) -> dict[str, Any]:
    return {
        "pending": plan.pending,
        "summary": plan_summary(plan),
        "plugins": [p.to_json() for p in plan.plugins],
    }


def declared_summary(section: dict[str, Any]) -> str:
    """'3 containers declared' for a section, from its collections."""
    parts = [
        f"{key}: {len(value)} declared"
        for key, value in section.items()
        if isinstance(value, list | dict)
    ]
    return ", ".join(parts) or "declared"


def field_changes(before: Any, after: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """The leaves that differ between two JSON values, as (dotted path, before, after)."""
    if isinstance(before, dict) and isinstance(after, dict):
        changes: list[tuple[str, Any, Any]] = []
        for key in sorted(set(before) | set(after), key=str):
            path = f"{prefix}.{key}" if prefix else str(key)
            changes += field_changes(before.get(key), after.get(key), path)
        return changes
    return [] if before == after else [(prefix or "value", before, after)]


def compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def plugin_plan_lines(plugin_plan: PluginPlan) -> list[str]:
    """Rich-markup lines for one plugin's part of the plan."""
    name = plugin_plan.name
    if plugin_plan.status != "ready":
        label = STATUS_TEXT.get(plugin_plan.status, plugin_plan.status)
        detail = plugin_plan.reason or declared_summary(plugin_plan.desired)
        if plugin_plan.status == "not_implemented":
            detail = declared_summary(plugin_plan.desired) + "; nothing read, nothing will change"
        return [f"[bold]{name:8}[/] [magenta]{label}[/]: {escape(detail)}"]
    if not plugin_plan.actions:
        return [f"[bold]{name:8}[/] [dim]up to date[/]"]
    lines = [f"[bold]{name:8}[/]"]
    for action in plugin_plan.actions:
        sign, colour = SIGNS[str(action.kind)]
        lines.append(f"  [{colour}]{sign} {escape(action.resource)}[/]")
        if str(action.kind) == "modify":
            for path, old, new in field_changes(action.before, action.after):
                old_text, new_text = escape(compact(old)), escape(compact(new))
                lines.append(f"      {escape(path)}: [red]{old_text}[/] -> [green]{new_text}[/]")
        elif str(action.kind) == "create" and action.after is not None:
            lines.append(f"      [green]{escape(compact(action.after))}[/]")
    return lines


def render_plan(console: Console, plan: Plan) -> None:
    """Print the plan in one write: large plans (a thousand ports) stay fast."""
    lines = [line for entry in plan.plugins for line in plugin_plan_lines(entry)]
    summary = plan_summary(plan)
    total = (
        f"Plan: [green]{summary['create']} to create[/], [yellow]{summary['modify']} to change[/], "
        f"[red]{summary['delete']} to delete[/]."
    )
    if summary["blocked"]:
        total += f" [magenta]Not handled: {', '.join(summary['blocked'])}.[/]"
    console.print("\n".join([*lines, "", total]))


def render_mismatches(console: Console, mismatches: dict[str, list[Mismatch]]) -> None:
    for name, items in mismatches.items():
        for mismatch in items:
            console.print(f"  [red]✗[/] {name}: {escape(mismatch.describe())}")
