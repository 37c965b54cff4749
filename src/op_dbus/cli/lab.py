"""`op-dbus lab`: bring the sandbox of real components up and down, and run commands inside it.

op_dbus.lab is imported inside each command so that `op-dbus --help` stays fast.
"""

from __future__ import annotations

import os
import shlex
import time
from typing import TYPE_CHECKING, NoReturn

import typer

from op_dbus.cli.context import JSON_OPT, fail, print_json, stderr, stdout
from op_dbus.exitcodes import ExitCode

if TYPE_CHECKING:
    from op_dbus.lab import Lab

lab_app = typer.Typer(no_args_is_help=True, add_completion=False)

NAME_OPTION = typer.Option("opdbus-lab", "--name", "-n", envvar="OPDBUS_LAB_NAME", help="Lab name.")
BARE_OPTION = typer.Option(
    False, "--bare", help="eth0 without the host's address and default route (made at first up)."
)


def _lab(name: str, json_out: bool = False, *, bare: bool = False) -> Lab:
    from op_dbus.lab import Lab, LabError

    if os.geteuid() != 0:
        _fail(
            json_out,
            ExitCode.INVALID_INPUT,
            "the lab needs root (network namespaces, mounts, cgroups)",
        )
    try:
        return Lab(name, bare=bare)
    except LabError as err:
        _fail(json_out, ExitCode.INVALID_INPUT, str(err))


def _fail(json_out: bool, code: ExitCode, message: str) -> NoReturn:
    """`fail`, or with --json the error as JSON on stdout."""
    if json_out:
        print_json({"error": message, "exit_code": int(code)})
        raise typer.Exit(int(code))
    fail(code, message)


@lab_app.command("up")
def up(name: str = NAME_OPTION, bare: bool = BARE_OPTION, json_out: bool = JSON_OPT) -> None:
    """Build (rootfs once) and start the lab; repairs missing pieces when already up."""
    from op_dbus.lab import LabError

    lab = _lab(name, json_out, bare=bare)
    began = time.monotonic()
    try:
        started = lab.up(log=lambda msg: stderr().print(msg))
    except LabError as err:
        _fail(
            json_out,
            ExitCode.UNEXPECTED,
            f"lab {name} is not up: {err} (clean up with `op-dbus lab down --name {name}`)",
        )
    took = time.monotonic() - began
    if json_out:
        print_json({"name": name, "started": started, "seconds": round(took, 3), "env": lab.env()})
        return
    if started:
        stdout().print(f"lab {name} up in {took:.1f} s (started: {', '.join(started)})")
    else:
        stdout().print(f"lab {name} was already up")
    stdout().print(
        f'use: eval "$(op-dbus lab env --name {name})"  or  op-dbus lab exec --name {name} -- CMD'
    )


@lab_app.command("down")
def down(name: str = NAME_OPTION, json_out: bool = JSON_OPT) -> None:
    """Stop and remove everything of the lab (by PID); safe after a crash and when already down."""
    lab = _lab(name, json_out)
    began = time.monotonic()
    left = lab.down()
    if left:
        _fail(json_out, ExitCode.UNEXPECTED, f"lab {name}: could not remove: {'; '.join(left)}")
    took = time.monotonic() - began
    if json_out:
        print_json({"name": name, "down": True, "seconds": round(took, 3)})
    else:
        stdout().print(f"lab {name} down in {took:.1f} s")


@lab_app.command("status")
def status(name: str = NAME_OPTION, json_out: bool = JSON_OPT) -> None:
    """Each component: running?, PID, socket, netns. Exit 0 when the whole lab is up, else 1."""
    report = _lab(name).status()
    if json_out:
        print_json(report)
    else:
        from rich.table import Table

        table = Table(title=f"lab {name} ({'up' if report['up'] else 'not up'})")
        for column in ("component", "running", "pid", "where"):
            table.add_column(column)
        for component, info in report["components"].items():
            where = info.get("socket") or info.get("path") or info.get("netns") or ""
            pid = info.get("pid")
            running = "[green]yes[/]" if info["running"] else "[red]no[/]"
            table.add_row(component, running, str(pid) if pid else "-", str(where))
        stdout().print(table)
    if not report["up"]:
        raise typer.Exit(int(ExitCode.UNEXPECTED))


@lab_app.command("env")
def env(name: str = NAME_OPTION, json_out: bool = JSON_OPT) -> None:
    """Print the variables that point op-dbus and the stock tools at the lab (for eval)."""
    lab = _lab(name)
    if not lab.is_up():
        stderr().print(f"[yellow]warning:[/] lab {name} is not up", markup=True)
    values = lab.env()
    if json_out:
        print_json(values)
        return
    for key, value in values.items():
        print(f"export {key}={shlex.quote(value)}")


@lab_app.command(
    "exec",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def exec_(
    command: list[str] = typer.Argument(..., help="The command, after --."),
    name: str = NAME_OPTION,
    json_out: bool = typer.Option(
        False, "--json", help="Our own errors as JSON; the command's output is its own."
    ),
) -> None:
    """Run a command inside the lab netns with the lab's environment; its exit code is ours."""
    lab = _lab(name, json_out)
    if not lab.is_up():
        _fail(json_out, ExitCode.UNEXPECTED, f"lab {name} is not up (op-dbus lab up --name {name})")
    argv = lab.exec_argv(command)
    os.execvp(argv[0], argv)


@lab_app.command(
    "canary",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def canary(
    command: list[str] = typer.Argument(..., help="The command, after --."),
    name: str = NAME_OPTION,
    json_out: bool = JSON_OPT,
) -> None:
    """Run a command inside the lab while an operator's TCP session (upstream -> 192.168.1.10)
    is open; then print the session's longest stall and any reset. CMD's exit code is ours."""
    import subprocess

    from op_dbus.lab import LabError

    lab = _lab(name, json_out)
    if not lab.is_up():
        _fail(json_out, ExitCode.UNEXPECTED, f"lab {name} is not up (op-dbus lab up --name {name})")
    try:
        with lab.canary() as seen:
            code = subprocess.run(lab.exec_argv(command), check=False).returncode
            time.sleep(0.5)  # a stall that starts at the end of the command counts too
    except LabError as err:
        _fail(json_out, ExitCode.UNEXPECTED, str(err))
    exit_code = code or (ExitCode.UNEXPECTED if seen.reset else 0)
    if json_out:
        print_json(
            {
                "exchanges": seen.exchanges,
                "longest_stall": seen.longest_stall,
                "reset": seen.reset,
                "exit_code": int(exit_code),
            }
        )
        raise typer.Exit(int(exit_code))
    ended = f"reset: {seen.reset}" if seen.reset else "no reset"
    stdout().print(
        f"canary: {seen.exchanges} exchanges, longest stall {seen.longest_stall * 1000:.0f} ms,"
        f" {ended}"
    )
    raise typer.Exit(int(exit_code))


@lab_app.command("build-rootfs")
def build_rootfs(
    force: bool = typer.Option(False, "--force", help="Rebuild even if cached."),
    json_out: bool = JSON_OPT,
) -> None:
    """Build the cached Debian rootfs the lab's systemd container boots (about a minute)."""
    from op_dbus.lab import LabError, rootfs

    if os.geteuid() != 0:
        _fail(json_out, ExitCode.INVALID_INPUT, "building the lab rootfs needs root")
    began = time.monotonic()
    try:
        path = rootfs.build(force=force, log=rootfs.CACHE_DIR / "lab-rootfs-build.log")
    except LabError as err:
        _fail(json_out, ExitCode.UNEXPECTED, str(err))
    took = time.monotonic() - began
    if json_out:
        print_json({"rootfs": str(path), "seconds": round(took, 3)})
    else:
        stdout().print(f"{path} ready ({took:.1f} s)")
