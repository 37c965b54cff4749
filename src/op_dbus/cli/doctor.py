"""`op-dbus doctor [--mode M] [--json]`: which components the mode needs, and how to get them.

Mode `auto` means the global `--mode`; if that is `auto` too, the doctor checks for `full`:
with no state file to decide from, it checks everything op-dbus could use, and each row
still says which modes need it. Exit code 6 when something the mode requires is missing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from op_dbus.cli.context import MODES, cli_context, run_async

if TYPE_CHECKING:
    from op_dbus.doctor import DoctorReport
    from op_dbus.model.modes import Mode

STATUS_STYLE = {
    "ok": "green",
    "missing": "bold red",
    "optional-missing": "yellow",
    "not-used": "dim",
}


def doctor_command(
    ctx: typer.Context,
    mode: str = typer.Option(
        "auto", "--mode", help="agent, standalone, full, or auto (the global --mode, else full)."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Check for real what the chosen mode needs (D-Bus, systemd, OVS, LXC...), with fixes."""
    from op_dbus.doctor import run_doctor

    cli = cli_context(ctx)
    report = run_async(run_doctor(resolve_mode(mode, cli.mode), cli.endpoints))
    if json_out:
        typer.echo(report.to_json())
    else:
        print_report(report)
    raise typer.Exit(report.exit_code)


def resolve_mode(option: str, global_mode: object = None) -> Mode:
    """The doctor's mode: the option, else the global --mode, else full (check everything)."""
    from op_dbus.model.modes import Mode

    if option not in MODES:
        raise typer.BadParameter(
            f"must be one of {', '.join(MODES)}, got {option!r}", param_hint="--mode"
        )
    if option != "auto":
        return Mode(option)
    if global_mode is not None and str(global_mode) in {m.value for m in Mode}:
        return Mode(str(global_mode))
    return Mode.FULL


def print_report(report: DoctorReport) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(highlight=False)
    table = Table(title=f"op-dbus doctor: {report.mode} mode", title_justify="left")
    for column in ("Component", "Status", "Detail", "Why op-dbus needs it"):
        table.add_column(column, overflow="fold")
    for c in report.components:
        status = f"[{STATUS_STYLE[c.status]}]{c.status}[/]"
        table.add_row(escape(c.name), status, escape(c.detail), escape(c.why))
    console.print(table)
    fixes = report.needs_fixing()
    for c in fixes:
        label = "required" if c.status == "missing" else "optional"
        console.print(f"\n[bold]{escape(c.name)}[/] ({label}: {escape(c.detail)})")
        console.print(f"  Debian/Ubuntu: {c.fix_debian}", markup=False, soft_wrap=True)
        console.print(f"  NixOS:         {c.fix_nixos}", markup=False, soft_wrap=True)
    if report.exit_code:
        missing = ", ".join(c.name for c in fixes if c.status == "missing")
        console.print(f"\n[bold red]Missing for {report.mode} mode:[/] {missing}")
    else:
        console.print(f"\n[green]Everything {report.mode} mode requires is present.[/]")
