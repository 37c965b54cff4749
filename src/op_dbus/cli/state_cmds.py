"""Commands about the state file itself: validate, schema, init."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import typer

from op_dbus.cli.context import (
    FILE_ARG,
    JSON_OPT,
    cli_context,
    fail,
    load_or_exit,
    print_json,
    print_warnings,
    stderr,
    stdout,
)
from op_dbus.cli.query import (
    ALL_UNITS_OPT,
    BRIDGE_OPT,
    CONTAINER_OPT,
    PLUGIN_OPT,
    UNIT_OPT,
    build,
    check_format,
    print_notes,
    read_host,
    section_names,
    selection_of,
)
from op_dbus.exitcodes import ExitCode


def validate(ctx: typer.Context, file: str = FILE_ARG, json_out: bool = JSON_OPT) -> None:
    """Check a state file without touching the host (exit 2 on any error, naming its path)."""
    from op_dbus.model import host_warnings

    loaded = load_or_exit(file, cli_context(ctx), json_out=json_out)
    warnings = host_warnings(loaded.state, None, loaded.shape)
    sections = list(loaded.state.sections())
    if json_out:
        print_json(
            {
                "valid": True,
                "file": file,
                "mode": str(loaded.mode),
                "shape": loaded.shape,
                "sections": sections,
                "warnings": [
                    {"path": w.path, "message": w.message} for w in loaded.warnings + warnings
                ],
            }
        )
        return
    print_warnings(warnings)
    stdout().print(
        f"[green]valid[/]: {file} (mode {loaded.mode}, sections: {', '.join(sections) or 'none'})"
    )


def schema(
    json_out: bool = typer.Option(False, "--json", help="The same: the schema is JSON."),
) -> None:
    """Print the JSON Schema of the state file (both shapes; also schema/op-dbus.schema.json)."""
    from op_dbus.model import state_json_schema

    print_json(state_json_schema())


def init(
    ctx: typer.Context,
    introspect: bool = typer.Option(
        False, "--introspect", help="Describe the host as it is now, through the plugins."
    ),
    plugin: list[str] = PLUGIN_OPT,
    unit: list[str] = UNIT_OPT,
    all_units: bool = ALL_UNITS_OPT,
    bridge: list[str] = BRIDGE_OPT,
    container: list[str] = CONTAINER_OPT,
    output: Path = typer.Option(
        None, "-o", "--output", help="Write here (.json: JSON, else YAML) instead of stdout."
    ),
    form: str = typer.Option(
        None, "--format", help="yaml or json (default: by the output's extension, else yaml)."
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing output file."),
    json_out: bool = typer.Option(
        False, "--json", help="Report as JSON: the document, the file, what was left out."
    ),
) -> None:
    """Write a starting state file: an empty one for the mode, or the host's current state
    (`--introspect`, the same document `op-dbus query` prints)."""
    from op_dbus.model import Mode
    from op_dbus.model.export import dump

    cli = cli_context(ctx)
    mode = cli.fixed_mode() or Mode.FULL
    if form is None:
        form = "json" if output is not None and output.suffix == ".json" else "yaml"
    check_format(form)
    if output is not None and os.path.lexists(output) and not force:
        fail(ExitCode.INVALID_INPUT, f"{output} exists; pass --force to overwrite it")
    names = section_names(cli, plugin)
    left_out: list[str] = []
    skipped: dict[str, str] = {}
    if introspect:
        selection = selection_of(unit, all_units, bridge, container)
        reply = read_host(cli, names)
        built = build(reply, selection)
        if not json_out:
            print_notes(built, reply, selection)
        document, left_out, skipped = built.document, built.left_out, reply["skipped"]
    else:
        from op_dbus.registry import REGISTRY

        sections = {name: dict(REGISTRY.by_name[name].empty) for name in names}
        document = {"version": 1, "plugins": sections}
    text = dump(document, form)
    report: dict[str, Any] = {"file": None if output is None else str(output), "mode": str(mode)}
    report |= {"document": document, "left_out": left_out, "skipped": skipped}
    if output is None:
        if json_out:
            print_json(report)
        else:
            typer.echo(text, nl=False)
    else:
        from op_dbus.files import write_file

        try:  # a symlink at `output` is replaced, never written through
            write_file(output, text, replace=force)
        except FileExistsError:
            fail(ExitCode.INVALID_INPUT, f"{output} exists; pass --force to overwrite it")
        except OSError as err:
            fail(ExitCode.INVALID_INPUT, f"{output}: {err.strerror}")
        if json_out:
            print_json(report)
        else:
            stderr().print(f"wrote {output} (mode {mode})")


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
    app.command("schema")(schema)
    app.command("init")(init)
