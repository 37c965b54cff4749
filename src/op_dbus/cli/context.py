"""What every command shares: endpoints, mode, and turning failures into exit codes."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer

from op_dbus.endpoints import Endpoints
from op_dbus.exitcodes import ExitCode

if TYPE_CHECKING:
    from rich.console import Console

    from op_dbus.api import HostApi
    from op_dbus.model import LoadedState, Mode

T = TypeVar("T")

MODES = ("agent", "standalone", "full", "auto")
FILE_ARG = typer.Argument(..., help="State file (JSON or YAML); - reads stdin.")
JSON_OPT = typer.Option(False, "--json", help="Machine-readable output.")
PROBE_OPT = typer.Option(
    None,
    "--probe",
    metavar="ADDR[:PORT]",
    help="Also reach this after a change to addresses, routes or the uplink, or roll it "
    "back (ping, or TCP connect with a port); repeatable.",
)


@dataclass(frozen=True)
class CliContext:
    endpoints: Endpoints
    mode: str  # "agent" | "standalone" | "full" | "auto"
    ledger: bool = True
    lock_wait: float = 30.0
    """Seconds a change waits for another writer's apply lock before giving up."""

    def fixed_mode(self) -> Mode | None:
        """The mode the user chose, or None for auto (decided from the state file)."""
        from op_dbus.model import Mode

        return None if self.mode == "auto" else Mode(self.mode)


def cli_context(ctx: typer.Context) -> CliContext:
    return ctx.obj["cli"]


def stdout() -> Console:
    """Without emoji codes: a user's `:smile:` in a plan or message is shown as written."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True, emoji=False)


def stderr() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


def fail(code: ExitCode, message: str) -> NoReturn:
    """Print `message` on stderr and leave with `code`; no traceback."""
    from rich.markup import escape

    stderr().print(f"[bold red]error:[/] {escape(message)}", markup=True)
    raise typer.Exit(int(code))


def with_api(
    cli: CliContext,
    names: Iterable[str],
    work: Callable[[HostApi], Awaitable[T]],
    *,
    daemon: bool = True,
    local: bool = True,
    json_out: bool = False,
) -> T:
    """Run `work(api)` against the daemon (when one answers and `daemon`), else on a local
    Host over the sections `names` (with `local`; without, no daemon is exit 6). An op-dbus
    error becomes its exit code and message (with `json_out`, as JSON on stdout)."""
    from op_dbus.api import connect
    from op_dbus.api.daemon import DaemonApi
    from op_dbus.errors import ComponentMissing, OpError

    async def run() -> T:
        api: HostApi | None
        if local:
            api = await connect(
                cli.endpoints,
                names,
                use_ledger=cli.ledger,
                daemon=daemon,
                lock_wait=cli.lock_wait,
                catch_signals=True,
            )
        elif (api := await DaemonApi.connect(cli.endpoints.system_bus)) is None:
            raise ComponentMissing(f"no op-dbus daemon answers on {cli.endpoints.system_bus}")
        try:
            return await work(api)
        finally:
            await api.close()

    try:
        return run_async(run())
    except OpError as err:
        if json_out:
            print_json({"error": err.message, "exit_code": int(err.code)})
            raise typer.Exit(int(err.code)) from None
        fail(err.code, err.message)


def check_plugin_names(plugins: list[str] | None) -> None:
    """Exit 2 unless every `--plugin` value names a plugin."""
    from op_dbus.registry import ORDER

    for name in plugins or []:
        if name not in ORDER:
            fail(ExitCode.INVALID_INPUT, f"--plugin must be one of {', '.join(ORDER)}")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, imported here because asyncio costs `op-dbus --help` ~20 ms."""
    import asyncio

    return asyncio.run(coro)


def load_or_exit(source: str, cli: CliContext, *, json_out: bool = False) -> LoadedState:
    """Load and check a state file; on any input error print every error path and exit 2."""
    from rich.markup import escape

    from op_dbus.model import StateInputError, load_state

    try:
        loaded = load_state(source, mode=cli.fixed_mode())
    except StateInputError as err:
        if json_out:
            errors = [
                {"path": e.path, "message": e.message, "line": e.line, "column": e.column}
                for e in err.errors
            ]
            print_json({"valid": False, "file": source, "errors": errors})
            raise typer.Exit(int(ExitCode.INVALID_INPUT)) from None
        console = stderr()
        console.print(
            f"[bold red]error:[/] {escape(source)} is not a valid state file:", markup=True
        )
        for error in err.errors:  # a path or message may quote a `[tag]` of the user's
            line = f"  [red]{escape(error.path)}[/]: {escape(error.message)}"
            console.print(line + f"[dim]{error.place}[/]", markup=True)
        raise typer.Exit(int(ExitCode.INVALID_INPUT)) from None
    print_warnings(loaded.warnings)
    return loaded


def print_warnings(warnings: list[Any]) -> None:
    from rich.markup import escape

    console = stderr()
    for warning in warnings:
        console.print(
            f"[yellow]warning:[/] {escape(f'{warning.path}: {warning.message}')}", markup=True
        )


def print_json(data: Any) -> None:
    import json

    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
