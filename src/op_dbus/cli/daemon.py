"""`op-dbus run` (the daemon) and `op-dbus confirm` (keep a tried state), and the helpers
`query` and `apply --confirm-within` use to work with a running daemon or without one."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from op_dbus.cli.context import (
    CliContext,
    cli_context,
    fail,
    load_or_exit,
    run_async,
    stderr,
    stdout,
)
from op_dbus.exitcodes import ExitCode

if TYPE_CHECKING:
    from op_dbus.engine.apply import ApplyResult
    from op_dbus.engine.plan import Plan
    from op_dbus.plugins.base import Plugin

POLICIES = ("enforce", "observe")


def run(
    ctx: typer.Context,
    state_file: Path = typer.Option(
        None, "--state-file", envvar="OPDBUS_STATE_FILE", help="The state to apply and keep."
    ),
    oneshot: bool = typer.Option(
        False, "--oneshot", help="Apply once and exit with the apply's exit code."
    ),
    policy: str = typer.Option(
        "enforce",
        "--policy",
        envvar="OPDBUS_POLICY",
        help="On drift: enforce (repair it) or observe (report and record only).",
    ),
    poll_interval: float = typer.Option(
        300.0, "--poll-interval", help="Seconds between safety re-reads of everything.", min=1.0
    ),
    fight_threshold: int = typer.Option(
        3,
        "--fight-threshold",
        min=1,
        help="Repairs of one resource per minute before it is held back (another tool fights).",
    ),
    cache: bool = typer.Option(
        True,
        "--cache/--no-cache",
        envvar="OPDBUS_CACHE",
        help="Answer queries from memory; --no-cache reads the host for each (NixOS: enableCache).",
    ),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="Log every event."),
) -> None:
    """Apply the state at start, then keep the host converged and answer on D-Bus."""
    import asyncio
    import logging

    from op_dbus.daemon.lock import AlreadyRunning, DaemonLock
    from op_dbus.daemon.reconcile import Policy
    from op_dbus.daemon.service import Daemon, DaemonOptions

    if policy not in POLICIES:
        fail(ExitCode.INVALID_INPUT, f"--policy must be one of {', '.join(POLICIES)}")
    cli = cli_context(ctx)
    if state_file is not None:
        load_or_exit(str(state_file), cli)  # refuse an invalid file before touching anything
    logging.basicConfig(format="op-dbus[%(process)d]: %(levelname)s %(message)s")
    logging.getLogger("op_dbus").setLevel(logging.DEBUG if verbose else logging.INFO)
    options = DaemonOptions(
        endpoints=cli.endpoints,
        state_file=state_file,
        mode=cli.fixed_mode(),
        policy=Policy(policy),
        oneshot=oneshot,
        use_ledger=cli.ledger,
        use_cache=cache,
        poll_interval=poll_interval,
        fight_threshold=fight_threshold,
    )
    try:
        with DaemonLock(cli.endpoints.data_dir):
            code = asyncio.run(Daemon(options).run())
    except AlreadyRunning as err:
        fail(ExitCode.UNEXPECTED, str(err))
    raise typer.Exit(code)


def confirm(ctx: typer.Context) -> None:
    """Keep the state of a pending `apply --confirm-within` (else it is rolled back)."""
    from op_dbus.daemon.client import confirm_daemon

    address = cli_context(ctx).endpoints.system_bus
    confirmed = run_async(confirm_daemon(address))
    if confirmed is None:
        fail(ExitCode.COMPONENT_MISSING, f"no op-dbus daemon answers on {address}")
    if not confirmed:
        fail(ExitCode.UNEXPECTED, "nothing to confirm: no tried state is waiting")
    stdout().print("[green]confirmed[/]: the tried state stays")


def cached_query(cli: CliContext, names: list[str]) -> tuple[dict[str, Any], dict[str, str]] | None:
    """For `query`: the running daemon's cache narrowed to `names` (sections, skipped), or
    None when no daemon answers or it does not handle every name (then read the host)."""
    from op_dbus.daemon.client import query_daemon

    reply = run_async(query_daemon(cli.endpoints.system_bus))
    if reply is None:
        return None
    sections, skipped = reply["state"]["plugins"], reply["skipped"]
    if any(name not in sections and name not in skipped for name in names):
        return None
    return (
        {name: sections[name] for name in names if name in sections},
        {name: skipped[name] for name in names if name in skipped},
    )


async def ask_on_terminal(seconds: float) -> bool:
    """True when the user types `yes` on stdin within `seconds` (never blocks past them)."""
    import asyncio
    import sys

    stderr().print(
        f"[bold]Keep this state?[/] Type yes within {seconds:g} s, or it is rolled back: ",
        end="",
        markup=True,
    )
    loop = asyncio.get_running_loop()
    line: asyncio.Future[str] = loop.create_future()
    fd = sys.stdin.fileno()
    try:
        loop.add_reader(fd, lambda: line.done() or line.set_result(sys.stdin.readline()))
    except PermissionError:  # a file or /dev/null cannot be polled, and never blocks either
        return sys.stdin.readline().strip().lower() in ("y", "yes")
    try:
        async with asyncio.timeout(seconds):
            answer = await line
    except TimeoutError:
        stderr().print("\nno confirmation in time")
        return False
    finally:
        loop.remove_reader(fd)
    return answer.strip().lower() in ("y", "yes")


async def hold_for_confirmation(
    plugins: Mapping[str, Plugin | None],
    plan: Plan,
    seconds: float,
    ask: Callable[[float], Awaitable[bool]] = ask_on_terminal,
) -> tuple[Plan, ApplyResult] | None:
    """`apply --confirm-within N` without a daemon, after `plan` was applied successfully:
    ask; None when confirmed, else the checkpoint (`plan`'s `current`) is restored and the
    restoring plan and its result are returned (for the ledger and the exit code)."""
    from op_dbus.daemon.restore import restore_checkpoints

    checkpoints = {e.name: e.current for e in plan.plugins if e.actions and e.current is not None}
    try:
        confirmed = await ask(seconds)
    except Exception as err:  # no answer to be had: the change must not stay unconfirmed
        stderr().print(f"\ncannot ask for confirmation ({err}): rolling back")
        confirmed = False
    if confirmed:
        return None
    return await restore_checkpoints(plugins, checkpoints)
