"""Human and JSON renderings of plans and apply results (terraform-style plan colours)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from rich.markup import escape

if TYPE_CHECKING:
    from rich.console import Console

SIGNS = {"create": ("+", "green"), "modify": ("~", "yellow"), "delete": ("-", "red")}
STATUS_TEXT = {
    "unavailable": "backend unavailable",
    "error": "could not be read",
    "refused": "refused, nothing will change",
}
"""Plans are rendered from their JSON form (`Plan.to_json()`), the same whichever way they
came: from the engine in this process or from the daemon."""


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


Line = list[tuple[str, str]]
"""One line of output as (text, rich style) segments; "" is unstyled."""


def plugin_plan_lines(entry: dict[str, Any]) -> list[Line]:
    """The lines of one plugin's part of the plan."""
    name = ((f"{entry['name']:8}", "bold"),)
    if entry["status"] != "ready":
        label = STATUS_TEXT.get(entry["status"], entry["status"])
        return [[*name, (" ", ""), (label, "magenta"), (f": {entry['reason']}", "")]]
    if not entry["actions"]:
        return [[*name, (" ", ""), ("up to date", "dim")]]
    lines: list[Line] = [[*name]]
    for action in entry["actions"]:
        sign, colour = SIGNS[action["kind"]]
        lines.append([("  ", ""), (f"{sign} {action['resource']}", colour)])
        for reason in action.get("dangerous") or []:
            lines.append([("    ", ""), (f"! dangerous: {reason}", "bold red")])
        if action["kind"] == "modify":
            for path, old, new in field_changes(action["before"], action["after"]):
                lines.append(
                    [
                        (f"      {path}: ", ""),
                        (compact(old), "red"),
                        (" -> ", ""),
                        (compact(new), "green"),
                    ]
                )
        elif action["kind"] == "create" and action["after"] is not None:
            lines.append([("      ", ""), (compact(action["after"]), "green")])
    return lines


def plan_lines(plan: dict[str, Any]) -> list[Line]:
    """Every line of the plan, the summary last."""
    lines = [line for entry in plan["plugins"] for line in plugin_plan_lines(entry)]
    summary = plan["summary"]
    total: Line = [
        ("Plan: ", ""),
        (f"{summary['create']} to create", "green"),
        (", ", ""),
        (f"{summary['modify']} to change", "yellow"),
        (", ", ""),
        (f"{summary['delete']} to delete", "red"),
        (".", ""),
    ]
    if summary.get("dangerous"):
        total += [(" ", ""), (f"{summary['dangerous']} dangerous (confirm first).", "bold red")]
    if summary["blocked"]:
        total += [(" ", ""), (f"Not handled: {', '.join(summary['blocked'])}.", "magenta")]
    return [*lines, [], total]


def plan_text(plan: dict[str, Any]) -> str:
    """The plan as plain text, as a terminal shows it less the colour (MCP, logs)."""
    return "\n".join("".join(t for t, _ in line) for line in plan_lines(plan)) + "\n"


def render_plan(console: Console, plan: dict[str, Any]) -> None:
    """Print the plan in one write. Colour costs rich ~0.1 s per thousand lines, so output
    that is not a terminal (pipes, logs, benchmarks) gets the same text without it."""
    if console.is_terminal:
        console.print("\n".join(markup(line) for line in plan_lines(plan)))
    else:
        console.file.write(plan_text(plan))


def markup(line: Line) -> str:
    return "".join(f"[{style}]{escape(text)}[/]" if style else escape(text) for text, style in line)


def render_mismatches(console: Console, mismatches: dict[str, list[dict[str, Any]]]) -> None:
    for name, items in mismatches.items():
        for m in items:
            text = f"{m['resource']}: {m['field']} is {m['actual']!r}, expected {m['expected']!r}"
            console.print(f"  [red]✗[/] {name}: {escape(text)}")


def render_status(console: Console, status: dict[str, Any]) -> None:
    """`op-dbus status` for people: one line per fact."""
    daemon = status.get("daemon")
    if daemon is None:
        console.print("daemon: [dim]not running[/] (changes are made by the command itself)")
    else:
        console.print(
            f"daemon: pid {daemon['pid']}, mode {daemon['mode']}, policy {daemon['policy']}, "
            f"state file {daemon['state_file'] or '-'}"
        )
    changes = status.get("runtime_changes") or []
    console.print(f"runtime changes: {len(changes) or 'none'}")
    for change in changes:
        console.print(
            f"  {change['time']}  {', '.join(change['sections'])}  {escape(change['actor'])}"
        )
    pending = status.get("try")
    if pending:
        console.print(
            f"[yellow]try pending[/]: {', '.join(pending['sections'])}, rolled back at "
            f"{pending['deadline']} ({pending['seconds_left']} s left) unless confirmed"
        )
    last = status.get("last_apply")
    if last:
        colour = "green" if last["exit_code"] == 0 else "red"
        console.print(f"last apply: {last['time']} [{colour}]{escape(last['message'])}[/]")
    drift = status.get("drift")
    if drift:
        console.print(f"drift: {drift['events']} event(s), {drift['repairs']} repair(s)")
    holder = status.get("lock_holder")
    console.print(
        "apply lock: free"
        if not holder
        else f"apply lock: held by pid {holder.get('pid')} ({escape(str(holder.get('actor')))})"
    )
