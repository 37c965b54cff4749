"""Commands that read or change the host through the plugins: query, diff, apply, verify."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import typer

from op_dbus.cli.context import (
    FILE_ARG,
    JSON_OPT,
    CliContext,
    check_plugin_names,
    cli_context,
    fail,
    load_or_exit,
    print_json,
    print_warnings,
    run_async,
    stderr,
    stdout,
)
from op_dbus.daemon.limits import MAX_TRY_SECONDS, MIN_TRY_SECONDS
from op_dbus.exitcodes import ExitCode

if TYPE_CHECKING:
    from op_dbus.engine.apply import ApplyResult
    from op_dbus.engine.plan import Plan
    from op_dbus.model import LoadedState
    from op_dbus.plugins.base import Mismatch, Plugin, Section

T = TypeVar("T")

PLUGIN_OPT = typer.Option(
    None, "--plugin", help="Only this plugin (systemd, net or lxc); repeat for several."
)


def desired_sections(loaded: LoadedState, plugins: list[str] | None) -> dict[str, Section]:
    """The file's sections, narrowed to `--plugin` choices (each must be in the file)."""
    check_plugin_names(plugins)
    sections = loaded.state.sections()
    if not plugins:
        return sections
    for name in plugins:
        if name not in sections:
            fail(ExitCode.INVALID_INPUT, f"the state file has no {name} section")
    return {name: section for name, section in sections.items() if name in plugins}


async def with_plugins(
    cli: CliContext, names: list[str], work: Callable[[dict[str, Plugin | None]], Awaitable[T]]
) -> T:
    """Run `work(plugins)` with one plugin per name, closing them afterwards."""
    from op_dbus.plugins import make_plugin

    plugins: dict[str, Plugin | None] = {name: make_plugin(name, cli.endpoints) for name in names}
    try:
        return await work(plugins)
    finally:
        for plugin in plugins.values():
            if plugin is not None:
                await plugin.close()


def host_bridge_warnings(loaded: LoadedState, plan: Plan) -> None:
    """Warn about containers on bridges neither the file nor the host has."""
    from op_dbus.model import host_warnings

    net = next((p for p in plan.plugins if p.name == "net" and p.status == "ready"), None)
    host_bridges = None
    if net is not None and net.current is not None:
        host_bridges = {i["name"] for i in net.current.get("interfaces", [])}
    print_warnings(host_warnings(loaded.state, host_bridges, loaded.shape))


def plan_for(cli: CliContext, loaded: LoadedState, sections: dict[str, Section]) -> Plan:
    from op_dbus.engine.plan import make_plan

    async def work(plugins: dict[str, Plugin | None]) -> Plan:
        return await make_plan(sections, plugins)

    plan = run_async(with_plugins(cli, list(sections), work))
    host_bridge_warnings(loaded, plan)
    return plan


def query(
    ctx: typer.Context,
    plugin: list[str] = PLUGIN_OPT,
    no_cache: bool = typer.Option(
        False, "--no-cache", help="Read the host even when a daemon runs and caches it."
    ),
    json_out: bool = JSON_OPT,
) -> None:
    """Show the host's current state in the state file's shape."""
    from op_dbus.engine.inventory import introspect_host
    from op_dbus.model import Mode
    from op_dbus.model.modes import SECTIONS_BY_MODE

    check_plugin_names(plugin)
    cli = cli_context(ctx)
    names = plugin or list(SECTIONS_BY_MODE[cli.fixed_mode() or Mode.FULL])
    cached = None
    if not no_cache:
        from op_dbus.cli.daemon import cached_query

        cached = cached_query(cli, names)
    sections, skipped = cached or run_async(introspect_host(names, cli.endpoints))
    if json_out:
        print_json({"state": {"version": 1, "plugins": sections}, "skipped": skipped})
    else:
        from rich.pretty import Pretty

        console = stdout()
        for name, section in sections.items():
            console.print(f"[bold]{name}[/]")
            console.print(Pretty(section, indent_guides=True))
        for name, reason in skipped.items():
            console.print(f"[bold]{name:8}[/] [magenta]{reason}[/]")
    if skipped:
        raise typer.Exit(int(ExitCode.COMPONENT_MISSING))


def diff(
    ctx: typer.Context,
    file: str = FILE_ARG,
    plugin: list[str] = PLUGIN_OPT,
    json_out: bool = JSON_OPT,
) -> None:
    """Show what apply would change (exit 3: changes pending, 6: a section cannot be handled)."""
    from op_dbus.cli.render import plan_to_json, render_plan

    cli = cli_context(ctx)
    loaded = load_or_exit(file, cli, json_out=json_out)
    plan = plan_for(cli, loaded, desired_sections(loaded, plugin))
    if json_out:
        print_json({"file": file, "mode": str(loaded.mode), **plan_to_json(plan)})
    else:
        console = stdout()
        console.print(f"[bold]Plan[/] for {file} (mode {loaded.mode})\n")
        render_plan(console, plan)
    raise typer.Exit(int(plan_exit_code(plan)))


def plan_exit_code(plan: Plan) -> ExitCode:
    """6 when a declared section cannot be handled, else 3 when anything would change."""
    if plan.blocked:
        return ExitCode.COMPONENT_MISSING
    return ExitCode.CHANGES_PENDING if plan.pending else ExitCode.OK


def apply(
    ctx: typer.Context,
    file: str = FILE_ARG,
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the plan, change nothing."),
    plugin: list[str] = PLUGIN_OPT,
    confirm_within: int = typer.Option(
        None,
        "--confirm-within",
        min=MIN_TRY_SECONDS,
        max=MAX_TRY_SECONDS,
        help="Roll back by itself unless `op-dbus confirm` (or `yes` here) comes in N seconds "
        "(1 to 86400).",
    ),
    json_out: bool = JSON_OPT,
) -> None:
    """Make the host match FILE as one checkpointed change; roll back on any failure."""
    from op_dbus.cli.progress import ApplyProgress
    from op_dbus.cli.render import plan_to_json, render_plan
    from op_dbus.engine.apply import apply_plan
    from op_dbus.engine.plan import make_plan

    cli = cli_context(ctx)
    loaded = load_or_exit(file, cli, json_out=json_out)
    sections = desired_sections(loaded, plugin)
    console = stdout()

    if dry_run:
        plan = plan_for(cli, loaded, sections)
        if json_out:
            print_json({"file": file, "dry_run": True, **plan_to_json(plan)})
        else:
            render_plan(console, plan)
        code = ExitCode.COMPONENT_MISSING if plan.blocked else ExitCode.OK
        raise typer.Exit(int(code))

    if confirm_within is not None:
        try_through_daemon(cli, sections, confirm_within, json_out)

    async def work(
        plugins: dict[str, Plugin | None],
    ) -> tuple[Plan, ApplyResult, tuple[Plan, ApplyResult] | None]:
        plan = await make_plan(sections, plugins)
        if not json_out:
            render_plan(console, plan)
        with ApplyProgress(stderr(), enabled=not json_out) as progress:
            result = await apply_plan(plan, plugins, on_progress=progress.update)
        restored = None
        if confirm_within is not None and plan.pending and result.exit_code == ExitCode.OK:
            from op_dbus.cli.daemon import hold_for_confirmation

            restored = await hold_for_confirmation(plugins, plan, confirm_within)
        return plan, result, restored

    plan, result, restored = run_async(with_plugins(cli, list(sections), work))
    if cli.ledger and plan.pending and result.exit_code != ExitCode.COMPONENT_MISSING:
        record_in_ledger(cli, loaded, sections, plan, result)
    if restored is not None:
        restore_plan, restore_result = restored
        if cli.ledger and restore_plan.pending:
            record_in_ledger(cli, loaded, sections, restore_plan, restore_result)
        result = unconfirmed_result(restore_result, confirm_within or 0)
    if json_out:
        print_json({"file": file, "plan": plan_to_json(plan), "result": result.to_json()})
    else:
        colour = "green" if result.exit_code == ExitCode.OK else "red"
        console.print(f"\n[{colour}]{result.message}[/]")
    raise typer.Exit(int(result.exit_code))


def unconfirmed_result(restore_result: ApplyResult, seconds: int) -> ApplyResult:
    """The outcome of a try nobody confirmed: rolled back (4), or the restore failed (5)."""
    if restore_result.exit_code == ExitCode.OK:
        restore_result.exit_code = ExitCode.ROLLED_BACK
        restore_result.message = f"not confirmed within {seconds} s: rolled back"
    else:
        restore_result.exit_code = ExitCode.ROLLBACK_FAILED
        restore_result.message = f"not confirmed within {seconds} s; {restore_result.message}"
    return restore_result


def try_through_daemon(
    cli: CliContext, sections: dict[str, Section], seconds: int, json_out: bool
) -> None:
    """With a daemon running, it holds the confirmation timer: hand it the try and exit.

    Without one, return: the apply runs here and waits in the foreground for a `yes`.
    """
    import json

    from op_dbus.daemon.client import try_via_daemon

    document = json.dumps({"version": 1, "plugins": sections})
    reply = run_async(try_via_daemon(cli.endpoints.system_bus, document, seconds))
    if reply is None:
        return
    if json_out:
        print_json(reply)
    else:
        code = reply["exit_code"]
        colour = "green" if code == ExitCode.OK else "red"
        stdout().print(f"[{colour}]{reply['message']}[/]")
        if code == ExitCode.OK:
            stdout().print(f"run `op-dbus confirm` within {seconds} s to keep it")
    raise typer.Exit(int(reply["exit_code"]))


def record_in_ledger(
    cli: CliContext,
    loaded: LoadedState,
    sections: dict[str, Section],
    plan: Plan,
    result: ApplyResult,
) -> None:
    """Append the apply to the ledger; a host change that cannot be recorded is an error.

    Only applies that set out to change the host are recorded: a no-op re-apply records no
    change (idempotence), and a refused apply (exit 6) changed nothing.
    """
    import sqlite3
    import sys

    from op_dbus.engine.record import command_actor, record_apply
    from op_dbus.ledger.store import Ledger, LedgerError

    try:
        with Ledger.open(cli.endpoints.data_dir) as ledger:
            record_apply(
                ledger,
                plan=plan,
                result=result,
                desired=sections,
                mode=str(loaded.mode),
                actor=command_actor(["op-dbus", *sys.argv[1:]]),
            )
    except (OSError, sqlite3.Error, LedgerError) as err:
        fail(
            ExitCode.UNEXPECTED,
            f"{result.message}; but the ledger in {cli.endpoints.data_dir} could not record it: "
            f"{err}",
        )


def verify(
    ctx: typer.Context,
    file: str = FILE_ARG,
    plugin: list[str] = PLUGIN_OPT,
    json_out: bool = JSON_OPT,
) -> None:
    """Check the host against FILE; list every mismatch (exit 3 when any)."""
    from op_dbus.cli.render import render_mismatches
    from op_dbus.engine.plan import NOT_IMPLEMENTED
    from op_dbus.engine.verify import verify_state

    cli = cli_context(ctx)
    loaded = load_or_exit(file, cli, json_out=json_out)
    sections = desired_sections(loaded, plugin)

    async def work(
        plugins: dict[str, Plugin | None],
    ) -> tuple[dict[str, str], dict[str, list[Mismatch]]]:
        blocked: dict[str, str] = {}
        for name, plugin in plugins.items():
            if plugin is None:
                blocked[name] = NOT_IMPLEMENTED
            elif not (availability := await plugin.available()).ok:
                blocked[name] = availability.reason
        if blocked:
            return blocked, {}
        return {}, await verify_state(sections, plugins, attempts=1, delay=0)

    blocked, mismatches = run_async(with_plugins(cli, list(sections), work))
    mismatches = {name: items for name, items in mismatches.items() if items}
    if json_out:
        print_json(
            {
                "file": file,
                "blocked": blocked,
                "mismatches": {n: [m.to_json() for m in i] for n, i in mismatches.items()},
            }
        )
    else:
        console = stdout()
        for name, reason in blocked.items():
            console.print(f"[bold]{name:8}[/] [magenta]{reason}[/]")
        render_mismatches(console, mismatches)
        if not blocked and not mismatches:
            console.print(f"[green]verified[/]: the host matches {file}")
    if blocked:
        raise typer.Exit(int(ExitCode.COMPONENT_MISSING))
    if mismatches:
        raise typer.Exit(int(ExitCode.CHANGES_PENDING))


def register(app: typer.Typer) -> None:
    app.command("query")(query)
    app.command("diff")(diff)
    app.command("apply")(apply)
    app.command("verify")(verify)
