"""Commands about the state file itself: validate, schema, init."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from op_dbus.cli.context import (
    FILE_ARG,
    JSON_OPT,
    cli_context,
    fail,
    load_or_exit,
    print_json,
    print_warnings,
    run_async,
    stderr,
    stdout,
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


def schema() -> None:
    """Print the JSON Schema of the state file."""
    from op_dbus.model import state_json_schema

    print_json(state_json_schema())


def init(
    ctx: typer.Context,
    introspect: bool = typer.Option(
        False, "--introspect", help="Describe the host as it is now, through the plugins."
    ),
    output: Path = typer.Option(None, "-o", "--output", help="Write here instead of stdout."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing output file."),
) -> None:
    """Write a starting state file: an empty one for the mode, or the host's current state."""
    from op_dbus.engine.inventory import introspect_host
    from op_dbus.model import Mode
    from op_dbus.model.modes import SECTIONS_BY_MODE

    cli = cli_context(ctx)
    mode = cli.fixed_mode() or Mode.FULL
    if output is not None and os.path.lexists(output) and not force:
        fail(ExitCode.INVALID_INPUT, f"{output} exists; pass --force to overwrite it")
    if introspect:
        from op_dbus.model.export import state_file_from

        read, skipped = run_async(introspect_host(SECTIONS_BY_MODE[mode], cli.endpoints))
        for name, reason in skipped.items():
            stderr().print(f"[yellow]skipped[/] {name}: {reason}")
        document = state_file_from(read)
    else:
        from op_dbus.registry import REGISTRY

        sections = {name: dict(REGISTRY.by_name[name].empty) for name in SECTIONS_BY_MODE[mode]}
        document = {"version": 1, "plugins": sections}
    import json

    text = json.dumps(document, indent=2) + "\n"
    if output is None:
        typer.echo(text, nl=False)
    else:
        from op_dbus.files import write_file

        try:  # a symlink at `output` is replaced, never written through
            write_file(output, text, replace=force)
        except FileExistsError:
            fail(ExitCode.INVALID_INPUT, f"{output} exists; pass --force to overwrite it")
        except OSError as err:
            fail(ExitCode.INVALID_INPUT, f"{output}: {err.strerror}")
        stderr().print(f"wrote {output} (mode {mode})")


def register(app: typer.Typer) -> None:
    app.command("validate")(validate)
    app.command("schema")(schema)
    app.command("init")(init)
