"""Commands that read or change the host: query, diff, apply, verify.

Each goes through the one API (`op_dbus.api.connect`): the running daemon when there is one,
the engine in this process otherwise. These functions only set options and render.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

import typer

from op_dbus.cli.context import (
    FILE_ARG,
    JSON_OPT,
    PROBE_OPT,
    check_plugin_names,
    cli_context,
    fail,
    load_or_exit,
    print_json,
    stderr,
    stdout,
    with_api,
)
from op_dbus.exitcodes import ExitCode
from op_dbus.limits import TRY_MAX_SECONDS, TRY_MIN_SECONDS

if TYPE_CHECKING:
    from op_dbus.api import HostApi
    from op_dbus.model import LoadedState
    from op_dbus.plugins.base import Section

T = TypeVar("T")

PLUGIN_OPT = typer.Option(
    None, "--plugin", help="Only this plugin (systemd, net or lxc); repeat for several."
)
PRUNE_OPT = typer.Option(
    False,
    "--prune",
    help="The file is the whole truth: remove owned bridges, ports and addresses it does not "
    "list (containers go only with state absent).",
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


def actor_text() -> str:
    """What this command is, for the ledger: `command=op-dbus apply x.json`."""
    import shlex
    import sys

    return f"command={shlex.join(['op-dbus', *sys.argv[1:]])}"


def plan_exit_code(plan: dict[str, Any]) -> ExitCode:
    """2 when a plugin refused the request, 6 when a declared section cannot be handled,
    else 3 when anything would change."""
    if plan["summary"]["refused"]:
        return ExitCode.INVALID_INPUT
    if plan["summary"]["blocked"]:
        return ExitCode.COMPONENT_MISSING
    return ExitCode.CHANGES_PENDING if plan["pending"] else ExitCode.OK


def show_plan(
    ctx: typer.Context,
    file: str,
    plugin: list[str] | None,
    json_out: bool,
    prune: bool = False,
    **extra: Any,
) -> None:
    """`diff` and `apply --dry-run`: print the plan, exit 3 when changes are pending."""
    from op_dbus.cli.render import render_plan

    cli = cli_context(ctx)
    loaded = load_or_exit(file, cli, json_out=json_out)
    sections = desired_sections(loaded, plugin)

    async def work(api: HostApi) -> dict[str, Any]:
        return await api.plan(sections, prune=prune)

    plan = with_api(cli, list(sections), work)
    if json_out:
        print_json({"file": file, "mode": str(loaded.mode), **extra, **plan})
    else:
        render_plan(stdout(), plan, heading=f"for {file} (mode {loaded.mode})")
    raise typer.Exit(int(plan_exit_code(plan)))


def diff(
    ctx: typer.Context,
    file: str = FILE_ARG,
    plugin: list[str] = PLUGIN_OPT,
    prune: bool = PRUNE_OPT,
    json_out: bool = JSON_OPT,
) -> None:
    """Show what apply would change (exit 3: changes pending, 6: a section cannot be handled)."""
    show_plan(ctx, file, plugin, json_out, prune)


def apply(
    ctx: typer.Context,
    file: str = FILE_ARG,
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Show the plan, change nothing (exits like diff)."
    ),
    plugin: list[str] = PLUGIN_OPT,
    confirm_within: int = typer.Option(
        None,
        "--confirm-within",
        min=TRY_MIN_SECONDS,
        max=TRY_MAX_SECONDS,
        help="Roll back by itself unless `op-dbus confirm` (or `yes` here) comes in N seconds "
        "(1 to 86400).",
    ),
    prune: bool = PRUNE_OPT,
    yes: bool = typer.Option(
        False, "--yes", "-y", help="Run dangerous actions without asking (needed off a terminal)."
    ),
    probe: list[str] = PROBE_OPT,
    json_out: bool = JSON_OPT,
) -> None:
    """Make the host match FILE as one checkpointed change; roll back on any failure.

    What FILE does not mention is left alone (unless --prune). Dangerous actions (cutting
    the default route or a live session, removing a bridge with running containers,
    destroying a container) are asked for on a terminal and refused off one without --yes."""
    if dry_run:
        show_plan(ctx, file, plugin, json_out, prune, dry_run=True)
    from op_dbus.cli.progress import ApplyProgress
    from op_dbus.cli.render import render_plan, render_result
    from op_dbus.engine.options import ApplyOptions
    from op_dbus.engine.probe import parse_targets
    from op_dbus.errors import Unconfirmed

    cli = cli_context(ctx)
    loaded = load_or_exit(file, cli, json_out=json_out)
    sections = desired_sections(loaded, plugin)
    console = stdout()

    def show(plan: dict[str, Any]) -> None:
        if not json_out:
            render_plan(console, plan, heading=f"for {file} (mode {loaded.mode})")

    async def work(api: HostApi) -> dict[str, Any]:
        if not json_out and api.via == "daemon":
            console.print("(through the running op-dbus daemon)")

        async def run(consent: dict[str, Any]) -> dict[str, Any]:
            options = ApplyOptions(
                actor_text(),
                str(loaded.mode),
                confirm_within=confirm_within,
                prune=prune,
                acknowledge=consent.get("acknowledge", False),
                expect_revision=consent.get("revision"),
                probes=parse_targets(probe or ()),
            )
            with ApplyProgress(stderr(), enabled=not json_out) as progress:
                return await api.apply(
                    sections,
                    options,
                    progress=progress.update,
                    on_plan=None if consent.get("shown") else show,
                )

        try:
            reply = await run({"acknowledge": True} if yes else {})
        except Unconfirmed:  # show the plan, ask, and apply exactly what was confirmed
            reply = await run(await confirm_dangers(api, sections, prune, json_out))
        if reply.get("try") and api.via == "local":
            return await hold_here(api, reply)
        return reply

    reply = with_api(cli, list(sections), work)
    result = reply["result"]
    if json_out:
        print_json({"file": file, **reply})
    else:
        render_result(console, result)
        if reply.get("try") and result["exit_code"] == ExitCode.OK:
            console.print(f"run `op-dbus confirm` within {confirm_within} s to keep it")
    raise typer.Exit(int(result["exit_code"]))


async def confirm_dangers(
    api: HostApi, sections: dict[str, Section], prune: bool, json_out: bool
) -> dict[str, Any]:
    """After the Host refused dangerous actions nobody acknowledged: plan, show the plan and
    ask on a terminal (default no), refuse off one (exit 2, nothing changed). Returns the
    consent to apply with: the actions acknowledged and the revision they were shown at."""
    import asyncio
    import sys

    from op_dbus.cli.render import render_plan

    plan = await api.plan(sections, prune=prune)
    if not plan.get("dangerous") or plan["summary"]["blocked"]:
        return {}  # the host changed meanwhile: apply asks the Host again
    listed = "; ".join(plan["dangerous"])
    if json_out:
        print_json({"plan": plan, "error": f"dangerous actions not confirmed: {listed}"})
    else:
        render_plan(stdout(), plan)
    if json_out or not sys.stdin.isatty():
        fail(
            ExitCode.INVALID_INPUT,
            f"refused, nothing changed: dangerous action(s) need confirming: {listed}; "
            "run on a terminal to be asked, or pass --yes",
        )
    stderr().print(
        f"[bold red]{len(plan['dangerous'])} dangerous action(s)[/] (marked ! above). "
        "Apply them? [y/N]: ",
        end="",
        markup=True,
    )
    answer = await asyncio.to_thread(sys.stdin.readline)
    if answer.strip().lower() not in ("y", "yes"):
        fail(ExitCode.INVALID_INPUT, "not confirmed: nothing changed")
    return {"acknowledge": plan["dangerous"], "revision": plan["revision"], "shown": True}


async def hold_here(api: HostApi, reply: dict[str, Any]) -> dict[str, Any]:
    """A try without a daemon: ask on the terminal until the try's deadline; keep the change
    on `yes`, roll it back otherwise. Returns what to report: the apply, or the rollback."""
    import asyncio

    from op_dbus.api.local import LocalApi
    from op_dbus.cli.daemon import ask_on_terminal

    assert isinstance(api, LocalApi)
    seconds = reply["try"]["seconds_left"]
    asking = asyncio.ensure_future(ask_on_terminal(seconds))
    ended = asyncio.ensure_future(api.wait_for_try())
    await asyncio.wait({asking, ended}, return_when=asyncio.FIRST_COMPLETED)
    if ended.done():  # the deadline passed: the Host rolled the change back
        asking.cancel()
        outcome = api.try_outcome()
        return {**reply, "try": None, **(outcome or {})}
    ended.cancel()
    try:
        confirmed = asking.result()
    except Exception as err:  # no answer to be had: the change must not stay unconfirmed
        stderr().print(f"\ncannot ask for confirmation ({err}): rolling back")
        confirmed = False
    if confirmed:
        await api.confirm(actor=actor_text())
        reply["result"]["message"] += "; confirmed"
        return {**reply, "try": None}
    rolled = await api.rollback(actor=actor_text())
    rolled["result"]["message"] = "not confirmed: " + rolled["result"]["message"]
    if rolled["result"]["exit_code"] == ExitCode.OK:
        rolled["result"]["exit_code"] = int(ExitCode.ROLLED_BACK)
    return {**reply, "try": None, **rolled}


def verify(
    ctx: typer.Context,
    file: str = FILE_ARG,
    plugin: list[str] = PLUGIN_OPT,
    json_out: bool = JSON_OPT,
) -> None:
    """Check the host against FILE; list every mismatch (exit 3 when any)."""
    from rich.markup import escape

    from op_dbus.cli.render import explain, render_mismatches

    cli = cli_context(ctx)
    loaded = load_or_exit(file, cli, json_out=json_out)
    sections = desired_sections(loaded, plugin)

    async def work(api: HostApi) -> dict[str, Any]:
        return await api.verify(sections)

    reply = with_api(cli, list(sections), work)
    blocked, mismatches = reply["blocked"], reply["mismatches"]
    if json_out:
        print_json({"file": file, **reply})
    else:
        console = stdout()
        for name, reason in blocked.items():
            console.print(f"[bold]{name:8}[/] [magenta]{escape(explain(reason))}[/]")
        render_mismatches(console, mismatches)
        if not blocked and not mismatches:
            console.print(f"[green]verified[/]: the host matches {file}")
    if blocked:
        raise typer.Exit(int(ExitCode.COMPONENT_MISSING))
    if mismatches:
        raise typer.Exit(int(ExitCode.CHANGES_PENDING))


def register(app: typer.Typer) -> None:
    app.command("diff")(diff)
    app.command("apply")(apply)
    app.command("verify")(verify)
