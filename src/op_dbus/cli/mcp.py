"""`op-dbus mcp`: the MCP server for AI agents (stdio, or streamable HTTP with `--http`),
and `op-dbus mcp token` for the HTTP server's bearer token."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from op_dbus.cli.context import JSON_OPT, cli_context, fail, print_json, run_async, stderr
from op_dbus.exitcodes import ExitCode

if TYPE_CHECKING:
    from op_dbus.cli.context import CliContext
    from op_dbus.mcp.http import HttpOptions

mcp_app = typer.Typer(add_completion=False)

TOKEN_FILE_OPT = typer.Option(
    None, "--token-file", help="The bearer token's file (default: mcp.token in the data dir)."
)


def token_path(cli: CliContext, token_file: Path | None) -> Path:
    from op_dbus.mcp.token import default_path

    return token_file or default_path(cli.endpoints.data_dir)


@mcp_app.callback(invoke_without_command=True)
def serve(
    ctx: typer.Context,
    http: str = typer.Option(
        None,
        "--http",
        metavar="[ADDR:]PORT",
        help="Serve streamable HTTP at /mcp on ADDR (default 127.0.0.1), e.g. 9573.",
    ),
    allow_write: bool = typer.Option(
        False, "--allow-write", help="Allow changes (each a try that rolls back unless confirmed)."
    ),
    token_file: Path = TOKEN_FILE_OPT,
    tls_cert: Path = typer.Option(None, "--tls-cert", help="TLS certificate (PEM) for HTTP."),
    tls_key: Path = typer.Option(None, "--tls-key", help="TLS private key (PEM) for HTTP."),
    allow_host: list[str] = typer.Option(
        [], "--allow-host", help="Another name clients reach the server by (Host header)."
    ),
    insecure_no_auth: bool = typer.Option(
        False,
        "--insecure-no-auth",
        help="HTTP without a token, for local testing: read-only and loopback only.",
    ),
) -> None:
    """Serve MCP on stdio (default) or HTTP; read-only unless --allow-write."""
    if ctx.invoked_subcommand is not None:
        return
    cli = cli_context(ctx)
    from op_dbus.errors import OpError

    try:
        options = (
            None
            if http is None
            else http_options(
                cli, http, token_file, tls_cert, tls_key, allow_host, insecure_no_auth, allow_write
            )
        )
    except OpError as err:
        fail(err.code, err.message)
    except PermissionError as err:
        fail(ExitCode.INVALID_INPUT, str(err))
    run_async(_serve(cli, options, allow_write=allow_write))


def http_options(
    cli: CliContext,
    listen: str,
    token_file: Path | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    allow_host: list[str],
    no_auth: bool,
    allow_write: bool,
) -> HttpOptions:
    """The HTTP server's options, checked (InvalidInput) and with its token made."""
    from op_dbus.mcp.http import HttpOptions, check_policy, parse_listen
    from op_dbus.mcp.token import load_or_create

    address, port = parse_listen(listen)
    path = None if no_auth else token_path(cli, token_file)
    options = HttpOptions(address, port, path, tls_cert, tls_key, tuple(allow_host))
    for warning in check_policy(options, allow_write=allow_write):
        stderr().print(f"[yellow]warning:[/] {warning}", markup=True)
    if path is not None:
        load_or_create(path)
    return options


async def _serve(cli: CliContext, http: HttpOptions | None, *, allow_write: bool) -> None:
    from op_dbus.api import connect
    from op_dbus.mcp.service import McpOptions, McpService
    from op_dbus.mcp.tools import build_server
    from op_dbus.model import Mode
    from op_dbus.model.modes import SECTIONS_BY_MODE

    names = SECTIONS_BY_MODE[cli.fixed_mode() or Mode.FULL]
    api = await connect(cli.endpoints, names, use_ledger=cli.ledger)
    options = McpOptions(
        allow_write=allow_write,
        mode=cli.fixed_mode(),
        needs_root=http is None and api.via == "local",
    )
    service = McpService(api, cli.endpoints, options)
    server = build_server(service)
    try:
        if http is None:
            await server.run_stdio_async()
        else:
            from op_dbus.mcp.http import serve_http

            access = "read-write" if allow_write else "read-only"
            stderr().print(f"op-dbus MCP on {http.url} ({access}, through {api.via})")
            await serve_http(server, service, http)
    finally:
        await api.close()  # a try still pending is rolled back: closing is no confirmation


@mcp_app.command("token")
def token(
    ctx: typer.Context,
    rotate: bool = typer.Option(False, "--rotate", help="Replace the token with a new one."),
    token_file: Path = TOKEN_FILE_OPT,
    json_out: bool = JSON_OPT,
) -> None:
    """Print the HTTP server's bearer token (made on first use, mode 0600)."""
    from op_dbus.mcp.token import load_or_create
    from op_dbus.mcp.token import rotate as rotate_token

    path = token_path(cli_context(ctx), token_file)
    try:
        value = rotate_token(path) if rotate else load_or_create(path)
    except OSError as err:
        if json_out:
            message = f"{path}: {err.strerror or err}"
            print_json({"error": message, "exit_code": int(ExitCode.INVALID_INPUT)})
            raise typer.Exit(int(ExitCode.INVALID_INPUT)) from None
        fail(ExitCode.INVALID_INPUT, f"{path}: {err.strerror or err}")
    if json_out:
        print_json({"token": value, "file": str(path), "rotated": rotate})
    else:
        print(value)
