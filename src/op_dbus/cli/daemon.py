"""`op-dbus run` (the daemon) and the commands that talk to it: `confirm`, `rollback`,
`reload`, `status`; and the terminal prompt of a try made without a daemon."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from op_dbus.cli.context import (
    JSON_OPT,
    PROBE_OPT,
    cli_context,
    fail,
    load_or_exit,
    print_json,
    run_async,
    stderr,
    stdout,
    with_api,
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
    from op_dbus.api import HostApi
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
    probe: list[str] = PROBE_OPT,
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
    json_out: bool = typer.Option(
        False, "--json", help="Log as JSON lines on stderr (time, level, message)."
    ),
) -> None:
    """Apply the state at start, then keep the host converged and answer on D-Bus."""
    import asyncio

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
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonLogFormatter()
        if json_out
        else logging.Formatter("op-dbus[%(process)d]: %(levelname)s %(message)s")
    )
    logging.basicConfig(handlers=[handler])
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


class JsonLogFormatter(logging.Formatter):
    """One JSON object per log record, for journald's or a collector's parsers."""

    def format(self, record: logging.LogRecord) -> str:
        import json

        return json.dumps(
            {
                "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
                "pid": record.process,
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": record.getMessage(),
            }
        )


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


def _actor(command: str) -> str:
    """Who decides a try, for the ledger: the uid (and the sudo user) and the command."""
    import os

    from op_dbus.engine.record import command_actor

    sudo = os.environ.get("SUDO_USER", "")
    actor = command_actor(["op-dbus", command])
    return f"{actor} sudo_user={sudo}" if sudo.isidentifier() else actor


def _decide(ctx: typer.Context, command: str, json_out: bool) -> dict[str, Any]:
    """`confirm` or `rollback` the pending try: through the daemon when one answers, else
    on the data dir; printed as JSON with `json_out`."""
    from op_dbus.registry import ORDER

    actor = _actor(command)

    async def work(api: HostApi) -> dict[str, Any]:
        decide = api.confirm if command == "confirm" else api.rollback
        return await decide(actor=actor)

    reply = with_api(cli_context(ctx), ORDER, work, json_out=json_out)
    if json_out:
        print_json(reply)
    return reply


def confirm(ctx: typer.Context, json_out: bool = JSON_OPT) -> None:
    """Keep the state of a pending `apply --confirm-within` (else it is rolled back), or of
    an apply that was interrupted. Works with the daemon, or without it from any shell."""
    _decide(ctx, "confirm", json_out)
    if not json_out:
        stdout().print("[green]confirmed[/]: the tried state stays")


def rollback(ctx: typer.Context, json_out: bool = JSON_OPT) -> None:
    """Roll the pending try (or an interrupted apply) back to its checkpoint now."""
    reply = _decide(ctx, "rollback", json_out)
    if not json_out:
        stdout().print(reply["result"]["message"])
    raise typer.Exit(int(reply["result"]["exit_code"]))


def try_keeper(
    ctx: typer.Context, try_id: str = typer.Argument(..., help="The try's id (32 hex digits).")
) -> None:
    """Hold the timer of a try made without a daemon (started by `apply --confirm-within`)."""
    import logging

    from op_dbus.engine.journal import ID_PATTERN
    from op_dbus.engine.keeper import keep

    if not ID_PATTERN.fullmatch(try_id):
        fail(ExitCode.INVALID_INPUT, "TRY_ID must be 32 hex digits")
    cli = cli_context(ctx)
    logging.basicConfig(format="op-dbus try-keeper[%(process)d]: %(levelname)s %(message)s")
    raise typer.Exit(run_async(keep(cli.endpoints, try_id, use_ledger=cli.ledger)))


def reload(ctx: typer.Context, json_out: bool = JSON_OPT) -> None:
    """Drop the daemon's runtime changes and re-apply its state file."""
    from op_dbus.api.daemon import DaemonApi

    async def ask(api: HostApi) -> dict[str, Any]:
        assert isinstance(api, DaemonApi)  # `local=False`: only the daemon answers
        return await api.reload()

    reply = with_api(cli_context(ctx), (), ask, local=False, json_out=json_out)
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

    from op_dbus.api.local import in_flight

    reply = run_async(ask())
    reply["in_flight"] = in_flight(cli.endpoints.data_dir)
    if json_out:
        print_json(reply)
        return
    from op_dbus.cli.render import render_status

    console = stdout()
    render_status(console, reply)
    render_in_flight(console, reply["in_flight"])


def render_in_flight(console: Any, changes: list[dict[str, Any]]) -> None:
    """The journal's changes for people: above all an apply that was interrupted."""
    from rich.markup import escape

    from op_dbus.engine.host import interrupted_message
    from op_dbus.engine.journal import PendingChange

    for item in changes:
        if "error" in item:
            console.print(f"[red]journal[/]: {escape(item['error'])}")
        elif item["interrupted"]:
            shown = PendingChange(item["id"], item["state"], {}, item["actor"], "", item["started"])
            console.print(f"[red]interrupted[/]: {escape(interrupted_message(shown))}")
        elif item["state"] == "try" and "deadline" in item:
            console.print(
                f"[yellow]try in the data dir[/]: {item['id'][:12]} "
                f"({', '.join(item['sections'])}), rolled back at {item['deadline']} "
                f"({item['seconds_left']} s left) unless `op-dbus confirm`"
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
