"""What is generated from the command table: the version, shell completion scripts and the
man page `man/op-dbus.1` (`make man`; a test keeps the committed copy current).

`python -m op_dbus.cli.manpage` prints the man page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    import click

SHELLS = ("bash", "zsh", "fish")
PROG = "op-dbus"
COMPLETE_VAR = "_OP_DBUS_COMPLETE"
EXIT_CODES = (
    (0, "ok"),
    (1, "unexpected error"),
    (2, "invalid input or usage; nothing changed"),
    (3, "changes pending (diff, verify)"),
    (4, "apply failed and was rolled back"),
    (5, "rollback failed too"),
    (6, "a needed component is missing"),
)
ENVIRONMENT = (
    ("OPDBUS_MODE", "agent, standalone, full or auto (--mode)"),
    ("OPDBUS_OVSDB", "OVSDB as ovs-vsctl --db takes it (--ovsdb)"),
    ("OPDBUS_SYSTEM_BUS", "the system bus address (--system-bus)"),
    ("OPDBUS_LXC_PATH", "the LXC path as lxc-* -P takes it (--lxc-path)"),
    ("OPDBUS_DATA_DIR", "where op-dbus keeps its ledger and locks (--data-dir)"),
    ("OPDBUS_DEBUG", "1: show a traceback on an unexpected error"),
)


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("op-dbus")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def root_command() -> Any:
    """The click command typer builds from the table (typer's own vendored click)."""
    from op_dbus.cli.main import app

    return typer.main.get_command(app)


def completion(
    shell: str = typer.Argument(..., help="bash, zsh or fish."),
    json_out: bool = typer.Option(False, "--json", help='As JSON: {"shell", "script"}.'),
) -> None:
    """Print the completion script; e.g. `op-dbus completion bash > /etc/bash_completion.d/op-dbus`
    (or `source <(op-dbus completion bash)`). The script asks op-dbus itself for completions."""
    from typer.completion import get_completion_script

    from op_dbus.cli.context import fail
    from op_dbus.exitcodes import ExitCode

    if shell not in SHELLS:
        fail(ExitCode.INVALID_INPUT, f"shell must be one of {', '.join(SHELLS)}, got {shell!r}")
    script = get_completion_script(prog_name=PROG, complete_var=COMPLETE_VAR, shell=shell)
    if json_out:
        from op_dbus.cli.context import print_json

        print_json({"shell": shell, "script": script})
    else:
        typer.echo(script)


def completing() -> None:
    """Ready typer's completion classes when a shell asks for completions (the command table
    is built with add_completion=False, which keeps `--install-completion` out of it)."""
    import os

    if COMPLETE_VAR in os.environ:
        from typer.completion import completion_init

        completion_init()


def roff(text: str) -> str:
    """Text safe in a man page line: backslashes, and a leading dot or quote, escaped."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text.startswith((".", "'")) else text


def _options(command: click.Command) -> list[str]:
    """Each option as `--help` shows it: its names and metavar, its help and default."""
    context = command.context_class(command, info_name=PROG)
    lines: list[str] = []
    for param in command.params:
        if param.param_type_name != "option" or getattr(param, "hidden", False):
            continue
        record = param.get_help_record(context)
        if record is not None:
            names, text = record
            lines += [".TP", f"\\fB{roff(names)}\\fR", roff(text)]
    return lines


def _commands(group: Any, path: list[str]) -> list[str]:
    lines: list[str] = []
    for name, command in sorted(group.commands.items()):
        if command.hidden:
            continue
        full = [*path, name]
        if hasattr(command, "commands"):
            lines += _commands(command, full)
            continue
        arguments = " ".join(
            roff(p.metavar or (p.name or "").upper())
            for p in command.params
            if p.param_type_name == "argument"
        )
        lines += [".SS " + roff(" ".join([PROG, *full]) + (f" {arguments}" if arguments else ""))]
        summary = (command.help or "").strip().split("\n\n")[0].replace("\n", " ")
        lines.append(roff(summary))
        lines += _options(command)
    return lines


def man_page() -> str:
    """The man page in roff, from the command table (no date: regenerating changes nothing)."""
    command = root_command()
    lines = [
        f'.TH OP\\-DBUS 1 "" "op\\-dbus {roff(version())}" "User Commands"',
        ".SH NAME",
        "op\\-dbus \\- " + roff(command.help or ""),
        ".SH SYNOPSIS",
        "\\fBop\\-dbus\\fR [\\fIGLOBAL OPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]...",
        ".SH DESCRIPTION",
        roff(
            "A state file (JSON or YAML) declares Open vSwitch bridges, ports and addresses, "
            "LXC containers and systemd units. op-dbus reads the host through native "
            "protocols, shows the difference, applies it as one checkpointed change that rolls "
            "back on failure, verifies it, and records it in a tamper-evident ledger."
        ),
        ".SH GLOBAL OPTIONS",
        *_options(command),
        ".SH COMMANDS",
        *_commands(command, []),
        ".SH EXIT STATUS",
    ]
    for code, meaning in EXIT_CODES:
        lines += [".TP", f"\\fB{code}\\fR", roff(meaning)]
    lines.append(".SH ENVIRONMENT")
    for name, meaning in ENVIRONMENT:
        lines += [".TP", f"\\fB{roff(name)}\\fR", roff(meaning)]
    lines += [
        ".SH SEE ALSO",
        roff("ovs-vsctl(8), lxc-ls(1), busctl(1); docs/ in the source tree."),
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    import sys

    sys.stdout.write(man_page())
