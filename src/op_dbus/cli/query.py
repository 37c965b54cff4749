"""`op-dbus query` and `init --introspect`: the host as a state document to keep or paste back.

Both read through the one API (the daemon's cache when one runs) and build the document with
`model.export.state_document`, so what `query` prints and what `init` writes are the same
text. `query --json` stays the machine reading (`{"state", "skipped"}`, with every read-only
fact, what the daemon's `QueryState` answers), narrowed by the same filters.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from op_dbus.cli.context import (
    JSON_OPT,
    CliContext,
    check_plugin_names,
    cli_context,
    fail,
    print_json,
    stderr,
    with_api,
)
from op_dbus.cli.plan_cmds import PLUGIN_OPT
from op_dbus.exitcodes import ExitCode

if TYPE_CHECKING:
    from op_dbus.api import HostApi
    from op_dbus.model.export import Document, Selection

FORMATS = ("yaml", "json")
UNIT_OPT = typer.Option(
    None, "--unit", help="systemd units matching this shell pattern; repeat for several."
)
ALL_UNITS_OPT = typer.Option(False, "--all", help="Every systemd unit (there are hundreds).")
BRIDGE_OPT = typer.Option(
    None, "--bridge", help="Bridges matching this pattern, with their ports; repeat for several."
)
CONTAINER_OPT = typer.Option(
    None, "--container", help="Containers whose name or id matches this pattern; repeatable."
)


def selection_of(
    units: list[str] | None,
    all_units: bool,
    bridges: list[str] | None,
    containers: list[str] | None,
    file_units: list[str] | None = None,
) -> Selection:
    """The resources asked for; units from `--unit`, a `--file`'s declared ones, or `--all`."""
    from op_dbus.model.export import Selection

    unit_patterns = ["*"] if all_units else [*(units or []), *(file_units or [])] or None
    return Selection(
        units=unit_patterns,
        bridges=bridges or None,
        containers=containers or None,
        narrowed=bool(units or bridges or containers),
    )


def declared_units(file: str | None, cli: CliContext) -> list[str] | None:
    """The systemd units a state file declares (None without a file)."""
    if file is None:
        return None
    from op_dbus.cli.context import load_or_exit

    loaded = load_or_exit(file, cli)
    return list((loaded.state.sections().get("systemd") or {}).get("units") or {})


def section_names(cli: CliContext, plugins: list[str] | None) -> list[str]:
    from op_dbus.model import Mode
    from op_dbus.model.modes import SECTIONS_BY_MODE

    check_plugin_names(plugins)
    return plugins or list(SECTIONS_BY_MODE[cli.fixed_mode() or Mode.FULL])


def read_host(cli: CliContext, names: list[str], *, cache: bool = True) -> dict[str, Any]:
    """The API's query reply for `names`: `{"state": ..., "skipped": ...}`."""

    async def work(api: HostApi) -> dict[str, Any]:
        return await api.query(names)

    return with_api(cli, names, work, daemon=cache)


def build(reply: dict[str, Any], selection: Selection, *, facts: bool = False) -> Document:
    from op_dbus.model.export import state_document

    return state_document(reply["state"]["plugins"], selection, facts=facts)


def print_notes(document: Document, reply: dict[str, Any], selection: Selection) -> None:
    """What the document leaves out, on stderr: stdout stays a file to paste back."""
    from rich.markup import escape

    from op_dbus.cli.render import explain

    console = stderr()
    for name, reason in reply["skipped"].items():
        console.print(f"[yellow]skipped[/] {name}: {escape(explain(reason))}")
    for note in document.left_out:
        console.print(f"[dim]left out[/] {escape(note)}")
    if selection.units is None and "systemd" in reply["state"]["plugins"]:
        console.print(
            "[dim]systemd units are shown when asked: --unit PATTERN, --file FILE "
            "(its declared units) or --all[/]"
        )


def check_format(form: str) -> None:
    if form not in FORMATS:
        fail(ExitCode.INVALID_INPUT, f"--format must be one of {', '.join(FORMATS)}, got {form!r}")


def query(
    ctx: typer.Context,
    plugin: list[str] = PLUGIN_OPT,
    unit: list[str] = UNIT_OPT,
    all_units: bool = ALL_UNITS_OPT,
    file: str = typer.Option(
        None, "--file", "-f", help="Show the systemd units this state file declares."
    ),
    bridge: list[str] = BRIDGE_OPT,
    container: list[str] = CONTAINER_OPT,
    facts: bool = typer.Option(
        False, "--facts", help="Also read-only facts (ofport, pid, owned...): not a state file."
    ),
    form: str = typer.Option("yaml", "--format", help="yaml (default) or json."),
    no_cache: bool = typer.Option(
        False, "--no-cache", help="Read the host even when a daemon runs and caches it."
    ),
    json_out: bool = JSON_OPT,
) -> None:
    """Print the host's state as a state document: it validates, and `diff` of it plans
    nothing. Exit 6 when a section cannot be read."""
    from op_dbus.model.export import dump

    check_format(form)
    cli = cli_context(ctx)
    names = section_names(cli, plugin)
    selection = selection_of(unit, all_units, bridge, container, declared_units(file, cli))
    reply = read_host(cli, names, cache=not no_cache)
    skipped = reply["skipped"]
    if json_out:  # the machine reading: every fact, narrowed like the document
        from op_dbus.model.export import select

        wanted = selection if selection.narrowed else None
        plugins = reply["state"]["plugins"]
        state = select(plugins, wanted) if wanted else plugins
        print_json({"state": {"version": 1, "plugins": state}, "skipped": skipped})
    else:
        document = build(reply, selection, facts=facts)
        typer.echo(dump(document.document, form), nl=False)
        print_notes(document, reply, selection)
    if skipped:
        raise typer.Exit(int(ExitCode.COMPONENT_MISSING))
