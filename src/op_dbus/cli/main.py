"""The `op-dbus` command: global options and the command table.

Command modules import their heavy dependencies inside the command functions so that
`op-dbus --help` stays fast (measured in benchmarks/).
"""

from __future__ import annotations

import os
import sys

import typer

from op_dbus.cli import (
    daemon,
    doctor,
    fleet,
    lab,
    ledger,
    manpage,
    mcp,
    plan_cmds,
    query,
    show,
    state_cmds,
)
from op_dbus.cli.context import MODES, CliContext
from op_dbus.endpoints import Endpoints
from op_dbus.exitcodes import ExitCode

app = typer.Typer(
    name="op-dbus",
    help="Declarative host state for Open vSwitch, LXC and systemd, over native protocols.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: rendering it with rich costs ~55 ms of imports
    context_settings={"help_option_names": ["-h", "--help"]},
)


def print_version(value: bool) -> None:
    if value:
        from op_dbus.cli.manpage import version

        typer.echo(f"op-dbus {version()}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    show_version: bool = typer.Option(
        False,
        "--version",
        is_eager=True,
        callback=print_version,
        help="Print the version and exit.",
    ),
    mode: str = typer.Option(
        "auto",
        "--mode",
        envvar="OPDBUS_MODE",
        help="agent (systemd), standalone (+ OVS), full (+ LXC), or auto (from the state file).",
    ),
    ovsdb: str = typer.Option(
        None, "--ovsdb", envvar="OPDBUS_OVSDB", help="OVSDB as ovs-vsctl --db takes it."
    ),
    system_bus: str = typer.Option(
        None, "--system-bus", envvar="OPDBUS_SYSTEM_BUS", help="System bus D-Bus address."
    ),
    lxc_path: str = typer.Option(
        None, "--lxc-path", envvar="OPDBUS_LXC_PATH", help="LXC path as lxc-* -P takes it."
    ),
    data_dir: str = typer.Option(
        None, "--data-dir", envvar="OPDBUS_DATA_DIR", help="Where op-dbus keeps its data."
    ),
    use_ledger: bool = typer.Option(
        True,
        "--ledger/--no-ledger",
        envvar="OPDBUS_LEDGER",
        help="Record every apply in the tamper-evident ledger (NixOS: enableBlockchain).",
    ),
    lock_wait: float = typer.Option(
        30.0,
        "--lock-wait",
        envvar="OPDBUS_LOCK_WAIT",
        min=0.0,
        max=3600.0,
        help="Seconds to wait for another apply's lock before giving up.",
    ),
) -> None:
    if mode not in MODES:
        raise typer.BadParameter(
            f"must be one of {', '.join(MODES)}, got {mode!r}", param_hint="--mode"
        )
    endpoints = Endpoints.from_env(
        ovsdb=ovsdb, system_bus=system_bus, lxc_path=lxc_path, data_dir=data_dir
    )
    ctx.obj = {
        "cli": CliContext(endpoints=endpoints, mode=mode, ledger=use_ledger, lock_wait=lock_wait)
    }


state_cmds.register(app)
app.command("query")(query.query)
plan_cmds.register(app)
app.command("show", help="The host as a tree: uplink, bridges, ports, containers.")(show.show)
app.command("doctor", help="Check what the chosen mode needs, with fixes.")(doctor.doctor_command)
app.command("run", help="Apply the state at start, then keep the host converged (the daemon).")(
    daemon.run
)
app.command("confirm", help="Keep the state of a pending `apply --confirm-within`.")(daemon.confirm)
app.command("rollback", help="Roll a pending try (or an interrupted apply) back now.")(
    daemon.rollback
)
app.command("try-keeper", hidden=True, help="Hold a try's timer (started by apply).")(
    daemon.try_keeper
)
app.command("reload", help="Drop the daemon's runtime changes, re-apply its state file.")(
    daemon.reload
)
app.command("status", help="The daemon, runtime changes, a pending try, the apply lock.")(
    daemon.status
)
app.add_typer(lab.lab_app, name="lab", help="A disposable sandbox of real OVS, systemd and LXC.")
app.add_typer(ledger.ledger_app, name="ledger", help="The tamper-evident record of every change.")
app.add_typer(ledger.ledger_app, name="blockchain", help="Alias of `ledger`.", hidden=True)
app.add_typer(mcp.mcp_app, name="mcp", help="The MCP server for AI agents (stdio or HTTP).")
app.add_typer(fleet.fleet_app, name="fleet", help="Desired state for many hosts, kept in etcd.")
app.command("completion", help="Print the shell completion script: bash, zsh or fish.")(
    manpage.completion
)


def run() -> None:
    """Console entry point: usage errors exit 2, anything unexpected exits 1 without a traceback."""
    manpage.completing()
    try:
        app(prog_name=manpage.PROG, complete_var=manpage.COMPLETE_VAR)
    except KeyboardInterrupt:
        sys.stderr.write("op-dbus: interrupted\n")
        sys.exit(130)
    except Exception as err:  # the last line of defence; OPDBUS_DEBUG=1 shows the traceback
        if os.environ.get("OPDBUS_DEBUG"):
            raise
        from op_dbus.errors import describe_error

        sys.stderr.write(
            f"op-dbus: unexpected error: {describe_error(err)} (OPDBUS_DEBUG=1 shows where)\n"
        )
        sys.exit(int(ExitCode.UNEXPECTED))
