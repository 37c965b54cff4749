"""Human and JSON renderings of plans and apply results (terraform-style plan colours)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from op_dbus.engine.topology import ROUTE_KEYS, route_text
from op_dbus.model.export import DECLARED_BY_KIND, prune, without_marks

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


Line = list[tuple[str, str]]
"""One line of output as (text, rich style) segments; "" is unstyled."""

INDENT = "      "
CONSEQUENCES = {
    "bridge": "its ports go with it (containers on them lose their link)",
    "container": "its root filesystem and config are destroyed",
}
"""What else a delete of each kind of resource takes with it, beyond its own row."""


def show(value: Any) -> str:
    """A value as a plan shows it: strings quoted, an address as ip/prefix, a route as `ip
    route` spells it, JSON otherwise."""
    if value is None:
        return "(none)"
    if isinstance(value, dict) and set(value) == {"ip", "prefix"}:
        return f"{value['ip']}/{value['prefix']}"
    if isinstance(value, dict) and "to" in value and set(value) <= ROUTE_KEYS:
        return route_text(value)
    if isinstance(value, list):
        return "[" + ", ".join(show(item) for item in value) + "]"
    return json.dumps(value, sort_keys=True, default=str)


def attributes(value: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """The set leaves of a resource as (dotted path, value): no nulls, no empty lists."""
    found: list[tuple[str, Any]] = []
    for key, item in value.items():
        path = f"{prefix}{key}"
        if isinstance(item, dict) and set(item) != {"ip", "prefix"}:
            found += attributes(item, f"{path}.")
        elif item is not None and item != [] and item != {}:
            found.append((path, item))
    return found


def changes(before: Any, after: dict[str, Any], prefix: str = "") -> list[tuple[str, Any, Any]]:
    """What a modify changes, as (dotted path, old, new). A modify's `after` is partial: only
    its keys count, bar those that only identify the resource (`name`, and keys that are
    not in `before`, like a port's bridge)."""
    old = before if isinstance(before, dict) else {}
    found: list[tuple[str, Any, Any]] = []
    for key, new in after.items():
        if key == "name" or (isinstance(before, dict) and key not in before):
            continue
        path = f"{prefix}{key}"
        if isinstance(new, dict) and isinstance(old.get(key), dict):
            found += changes(old[key], new, f"{path}.")
        elif old.get(key) != new:
            found.append((path, old.get(key), new))
    return found


def _aligned(rows: list[tuple[str, Any]], sign: str, colour: str) -> list[Line]:
    width = max((len(path) for path, _ in rows), default=0)
    return [[(f"{INDENT}{sign} {path:<{width}} = {show(value)}", colour)] for path, value in rows]


def declared(kind: str, entry: dict[str, Any]) -> dict[str, Any]:
    """What a state file would say of a resource the plan deletes: its declared fields,
    without read-only facts (ofport, pid) and op-dbus's own marks."""
    model = DECLARED_BY_KIND.get(kind)
    if model is None:
        return entry
    return without_marks(prune(entry, model))


def _identity(action: dict[str, Any], value: dict[str, Any]) -> dict[str, Any]:
    """`value` without the name its resource already shows."""
    shown = action["resource"].rsplit("/", 1)[-1]
    return {k: v for k, v in value.items() if not (k == "name" and v == shown)}


def rule_text(rule: dict[str, Any]) -> str:
    """An OpenFlow rule in words: `table 0, priority 100: in_port vi101, proto ip -> drop`."""
    head = f"table {rule.get('table')}, priority {rule.get('priority')}: "
    if "unrecognised" in rule:
        return head + f"not op-dbus's form: {show(rule['unrecognised'])}"
    match = ", ".join(f"{k} {v}" for k, v in (rule.get("match") or {}).items()) or "anything"
    actions = ", ".join(
        a if isinstance(a, str) else " ".join(f"{k} {v}" for k, v in a.items())
        for a in rule.get("actions") or []
    )
    return f"{head}{match} -> {actions}"


def rule_lines(before: dict[str, Any], after: dict[str, Any]) -> list[Line]:
    """A bridge's OpenFlow rules that go (`-`) and come (`+`), one rule a line."""
    old, new = before.get("openflow") or [], after.get("openflow") or []
    gone = [("-", "red", rule) for rule in old if rule not in new]
    added = [("+", "green", rule) for rule in new if rule not in old]
    return [
        [(f"{INDENT}{sign} rule ", ""), (rule_text(rule), colour)]
        for sign, colour, rule in gone + added
    ]


def action_lines(action: dict[str, Any], plan_actions: list[dict[str, Any]]) -> list[Line]:
    """One action: its header, then one attribute per line (creates: every set value;
    modifies: the changed fields; deletes: what goes, and what goes with it)."""
    sign, colour = SIGNS[action["kind"]]
    lines: list[Line] = [[("  ", ""), (f"{sign} {action['resource']}", f"bold {colour}")]]
    for mark in action.get("dangerous") or []:  # the safety checks' marks, when a plan has them
        lines.append([(f"{INDENT}! ", "bold red"), (str(mark), "bold red")])
    if action["kind"] == "create":
        after = _identity(action, action["after"] or {})
        if action["resource"].startswith("bridge/") and "ports" not in after:
            name = action["resource"].split("/", 1)[1]
            ports = [
                a["resource"].split("/", 1)[1]
                for a in plan_actions
                if a["kind"] == "create"
                and a["resource"].startswith("port/")
                and (a["after"] or {}).get("bridge") == name
            ]
            if ports:
                after["ports"] = ports
        lines += _aligned(attributes(after), "+", colour)
    elif action["kind"] == "modify" and action["resource"].startswith("openflow/"):
        lines += rule_lines(action["before"] or {}, action["after"] or {})
    elif action["kind"] == "modify":
        rows = changes(action["before"], action["after"] or {})
        width = max((len(path) for path, _, _ in rows), default=0)
        for path, old, new in rows:
            lines.append(
                [
                    (f"{INDENT}~ {path:<{width}} = ", ""),
                    (show(old), "red"),
                    (" -> ", ""),
                    (show(new), "green"),
                ]
            )
    else:
        kind = action["resource"].split("/", 1)[0]
        before = _identity(action, declared(kind, action["before"] or {}))
        gone = CONSEQUENCES.get(kind)
        if kind == "bridge" and before.get("ports"):
            gone = f"its ports go with it: {', '.join(before.pop('ports'))}"
            containers = (action["before"] or {}).get("containers")
            if containers:
                gone += f"; containers {', '.join(containers)} lose their link"
        lines += _aligned(attributes(before), "-", colour)
        if gone:
            lines.append([(f"{INDENT}  ", ""), (gone, "red")])
    return lines


def explain(reason: str, *, missing: bool = True) -> str:
    """Why a section cannot be handled, with what to do: a refused permission needs root
    (or the daemon, which has it); a backend that is missing is `op-dbus doctor`'s to
    explain. OS error numbers (`[Errno 13]`) say nothing to people and go."""
    import os
    import re

    from op_dbus.errors import NEEDS_ROOT

    text = re.sub(r"\[Errno \d+\] ", "", reason)
    if "Permission denied" in text and NEEDS_ROOT not in text and os.geteuid() != 0:
        return f"{text}; {NEEDS_ROOT}"
    if missing and "op-dbus doctor" not in text:
        return f"{text} (see `op-dbus doctor`)"
    return text


def plugin_plan_lines(entry: dict[str, Any]) -> list[Line]:
    """The lines of one plugin's part of the plan."""
    name = ((f"{entry['name']:8}", "bold"),)
    if entry["status"] != "ready":
        label = STATUS_TEXT.get(entry["status"], entry["status"])
        reason = explain(entry["reason"], missing=entry["status"] in ("unavailable", "error"))
        return [[*name, (" ", ""), (label, "magenta"), (f": {reason}", "")]]
    if not entry["actions"]:
        return [[*name, (" ", ""), ("up to date", "dim")]]
    lines: list[Line] = [[*name]]
    for action in entry["actions"]:
        lines += action_lines(action, entry["actions"])
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


def render_plan(console: Console, plan: dict[str, Any], *, heading: str = "") -> None:
    """Print the plan in one write (`diff` and `apply` alike). Colour costs rich ~0.1 s per
    thousand lines, so output that is not a terminal (pipes, logs, benchmarks) gets the same
    text without it."""
    lines: list[Line] = [[("Plan", "bold"), (f" {heading}" if heading else "", "")], []]
    lines += plan_lines(plan)
    if console.is_terminal:
        console.print("\n".join(markup(line) for line in lines))
    else:
        console.file.write("\n".join("".join(t for t, _ in line) for line in lines) + "\n")


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


def result_lines(result: dict[str, Any]) -> list[Line]:
    """What an apply did: each action with its time, the total, and how it ended."""
    lines: list[Line] = []
    applied = result.get("applied") or []
    times = result.get("action_seconds") or []
    if applied:
        width = max(len(f"{a['plugin']} {a['resource']}") for a in applied)
        undone = result["exit_code"] in (4, 5)
        lines.append([("Undone by the rollback:" if undone else "Done:", "bold")])
        for index, action in enumerate(applied):
            sign, colour = SIGNS[action["kind"]]
            took = f"{times[index]:.1f} s" if index < len(times) else ""
            name = f"{action['plugin']} {action['resource']}"
            lines.append([("  ", ""), (f"{sign} {name:<{width}}", colour), (f"  {took}", "dim")])
    if result.get("failed"):
        failed = result["failed"]
        lines.append(
            [
                ("Failed: ", "bold red"),
                (f"{failed['kind']} {failed['plugin']}:{failed['resource']}", "red"),
            ]
        )
    if result.get("rolled_back"):
        rolled = ", ".join(f"{a['kind']} {a['resource']}" for a in result["rolled_back"])
        lines.append([("Rollback did: ", "bold"), (rolled, "")])
    colour = "green" if result["exit_code"] == 0 else "red"
    total = f" ({result['seconds']:.1f} s)" if result.get("seconds") else ""
    lines.append([(result["message"], colour), (total, "dim")])
    return lines


def render_result(console: Console, result: dict[str, Any]) -> None:
    """Print the end of an apply (also of a rollback or restore), after its plan."""
    console.print()
    for line in result_lines(result):
        console.print(markup(line))
