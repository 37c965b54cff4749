"""`op-dbus run` (the daemon) and the commands that talk to it: `confirm`, `rollback`,
`reload`, `status`; and the terminal prompt of a try made without a daemon."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from op_dbus.cli.context import (
    JSON_OPT,
    cli_context,
    fail,
    load_or_exit,
    print_json,
    run_async,
    stderr,
    stdout,
)
from op_dbus.cli.fleet import (
    CACERT_OPT,
    CERT_OPT,
    ETCD_OPT,
    KEY_OPT,
    PASSWORD_OPT,
    USER_OPT,
    etcd_options,
)
from op_dbus.exitcodes import ExitCode

if TYPE_CHECKING:
    from op_dbus.api.daemon import DaemonApi
    from op_dbus.cli.context import CliContext
    from op_dbus.fleet.agent import AgentOptions
    from op_dbus.fleet.store import EtcdOptions

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
    mcp_http: str = typer.Option(
        None, "--mcp-http", metavar="ADDR:PORT", help="Serve MCP over HTTP too (e.g. 9573)."
    ),
    mcp_token_file: Path = typer.Option(
        None, "--mcp-token-file", help="The MCP bearer token's file (default: in the data dir)."
    ),
    mcp_allow_write: bool = typer.Option(
        False, "--mcp-allow-write", help="Let MCP clients change the host (each change a try)."
    ),
    reload_on_change: str = typer.Option(
        "yes",
        "--reload-on-change",
        metavar="yes|no",
        help="Reload when the state file changes (no: only on SIGHUP or `op-dbus reload`).",
    ),
    probe: list[str] = typer.Option(
        None,
        "--probe",
        metavar="ADDR[:PORT]",
        help="Also reach this after a change to addresses, routes or the uplink, or roll it "
        "back (ping, or TCP connect with a port); repeatable.",
    ),
    fleet: bool = typer.Option(
        False, "--fleet", help="Also take desired state from etcd (docs/fleet.md)."
    ),
    host_name: str = typer.Option(
        None, "--host-name", envvar="OPDBUS_HOST_NAME", help="This host's name in the fleet."
    ),
    etcd: str = ETCD_OPT,
    etcd_cacert: Path = CACERT_OPT,
    etcd_cert: Path = CERT_OPT,
    etcd_key: Path = KEY_OPT,
    etcd_user: str = USER_OPT,
    etcd_password_file: Path = PASSWORD_OPT,
    probe_target: list[str] = typer.Option(
        [], "--probe-target", metavar="ADDR:PORT", help="Must accept TCP after a fleet change."
    ),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="Log every event."),
) -> None:
    """Apply the state at start, then keep the host converged and answer on D-Bus."""
    import asyncio
    import logging

    from op_dbus.daemon.lock import AlreadyRunning, DaemonLock
    from op_dbus.daemon.reconcile import Policy
    from op_dbus.daemon.service import Daemon, DaemonOptions
    from op_dbus.engine.probe import parse_targets
    from op_dbus.errors import OpError

    if policy not in POLICIES:
        fail(ExitCode.INVALID_INPUT, f"--policy must be one of {', '.join(POLICIES)}")
    if reload_on_change not in ("yes", "no"):
        fail(ExitCode.INVALID_INPUT, "--reload-on-change must be yes or no")
    try:
        probes = parse_targets(probe or ())
    except OpError as err:
        fail(err.code, err.message)
    cli = cli_context(ctx)
    if state_file is not None:
        load_or_exit(str(state_file), cli)  # refuse an invalid file before touching anything
    mcp = None
    if mcp_http is not None:
        from op_dbus.cli.mcp import http_options

        try:
            mcp = http_options(
                cli, mcp_http, mcp_token_file, None, None, [], False, mcp_allow_write
            )
        except (OpError, PermissionError) as err:
            fail(ExitCode.INVALID_INPUT, getattr(err, "message", str(err)))
    agent = None
    if fleet:
        agent = _agent_options(
            cli,
            host_name,
            etcd_options(etcd, etcd_cacert, etcd_cert, etcd_key, etcd_user, etcd_password_file),
            probe_target,
        )
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
        mcp_http=mcp,
        mcp_allow_write=mcp_allow_write,
        reload_on_change=reload_on_change == "yes",
        probes=probes,
        fleet=agent,
    )
    try:
        with DaemonLock(cli.endpoints.data_dir):
            code = asyncio.run(Daemon(options).run())
    except AlreadyRunning as err:
        fail(ExitCode.UNEXPECTED, str(err))
    raise typer.Exit(code)


def _agent_options(
    cli: CliContext, host_name: str | None, etcd: EtcdOptions, probe_targets: list[str]
) -> AgentOptions:
    from op_dbus.errors import InvalidInput
    from op_dbus.fleet.agent import AgentOptions
    from op_dbus.fleet.keys import check_name
    from op_dbus.fleet.probe import ProbeOptions, parse_target

    if host_name is None:
        fail(ExitCode.INVALID_INPUT, "--fleet needs --host-name NAME")
    try:
        probe = ProbeOptions(targets=tuple(parse_target(t) for t in probe_targets))
        check_name(host_name, "--host-name")
    except InvalidInput as err:
        fail(ExitCode.INVALID_INPUT, err.message)
    return AgentOptions(
        host=host_name,
        etcd=etcd,
        data_dir=cli.endpoints.data_dir,
        mode=cli.fixed_mode(),
        probe=probe,
    )


def _daemon_call(
    ctx: typer.Context, json_out: bool, work: Callable[[DaemonApi], Awaitable[dict[str, Any]]]
) -> dict[str, Any]:
    """`work(api)` against the running daemon; exit 6 when none runs, an op-dbus error's
    own code otherwise."""
    from op_dbus.api.daemon import DaemonApi
    from op_dbus.errors import OpError

    address = cli_context(ctx).endpoints.system_bus

    async def call() -> dict[str, Any] | None:
        api = await DaemonApi.connect(address)
        if api is None:
            return None
        try:
            return await work(api)
        finally:
            await api.close()

    try:
        reply = run_async(call())
    except OpError as err:
        if json_out:
            print_json({"error": err.message, "exit_code": int(err.code)})
            raise typer.Exit(int(err.code)) from None
        fail(err.code, err.message)
    if reply is None:
        message = (
            f"no op-dbus daemon answers on {address} (a try made without a daemon is "
            "confirmed on the terminal that started it)"
        )
        if json_out:
            print_json({"error": message, "exit_code": int(ExitCode.COMPONENT_MISSING)})
            raise typer.Exit(int(ExitCode.COMPONENT_MISSING))
        fail(ExitCode.COMPONENT_MISSING, message)
    return reply


def confirm(ctx: typer.Context, json_out: bool = JSON_OPT) -> None:
    """Keep the state of a pending `apply --confirm-within` (else it is rolled back)."""
    reply = _daemon_call(ctx, json_out, lambda api: api.confirm(actor="command=op-dbus confirm"))
    if json_out:
        print_json(reply)
    else:
        stdout().print("[green]confirmed[/]: the tried state stays")


def rollback(ctx: typer.Context, json_out: bool = JSON_OPT) -> None:
    """Roll the pending try back now, without waiting for its deadline."""
    reply = _daemon_call(ctx, json_out, lambda api: api.rollback(actor="command=op-dbus rollback"))
    if json_out:
        print_json(reply)
    else:
        stdout().print(reply["result"]["message"])
    raise typer.Exit(int(reply["result"]["exit_code"]))


def reload(ctx: typer.Context, json_out: bool = JSON_OPT) -> None:
    """Drop the daemon's runtime changes and re-apply its state file."""
    reply = _daemon_call(ctx, json_out, lambda api: api.reload())
    if json_out:
        print_json(reply)
    else:
        dropped = reply["runtime_changes_dropped"]
        stdout().print(f"reloading {reply['reloading']}; {dropped} runtime change(s) dropped")


def status(ctx: typer.Context, json_out: bool = JSON_OPT) -> None:
    """The daemon (pid, mode, policy, state file), its runtime changes, a pending try, the
    last apply, drift counters, and who holds the apply lock."""
    from op_dbus.api import connect

    cli = cli_context(ctx)

    async def ask() -> dict[str, Any]:
        api = await connect(cli.endpoints, (), use_ledger=False)
        try:
            return await api.status()
        finally:
            await api.close()

    reply = run_async(ask())
    if json_out:
        print_json(reply)
        return
    from op_dbus.cli.render import render_status

    render_status(stdout(), reply)


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

    def readable() -> None:
        if not line.done():
            line.set_result(sys.stdin.readline())

    try:
        loop.add_reader(fd, readable)
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
