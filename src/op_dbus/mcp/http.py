"""Streamable HTTP at /mcp (and the live page at /), behind the Guard, served by uvicorn.

The rules of where it may listen: loopback by default (127.0.0.1:9573); any other address
needs the token (and should have TLS: --tls-cert/--tls-key); `--insecure-no-auth` is for local
testing only, read-only and loopback-only.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from op_dbus.errors import InvalidInput
from op_dbus.mcp.guard import MAX_BODY, Guard, is_loopback

if TYPE_CHECKING:
    from mcp.server import MCPServer

    from op_dbus.mcp.service import McpService

log = logging.getLogger("op_dbus.mcp")

DEFAULT_ADDRESS = "127.0.0.1"
DEFAULT_PORT = 9573
WILDCARDS = frozenset({"0.0.0.0", "::"})


@dataclass(frozen=True)
class HttpOptions:
    address: str = DEFAULT_ADDRESS
    port: int = DEFAULT_PORT
    token_file: Path | None = None
    """None: --insecure-no-auth (loopback, read-only)."""
    tls_cert: Path | None = None
    tls_key: Path | None = None
    allowed_hosts: tuple[str, ...] = field(default_factory=tuple)
    """Names clients reach the server by, besides its address and loopback."""

    @property
    def url(self) -> str:
        scheme = "https" if self.tls_cert else "http"
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{scheme}://{host}:{self.port}/mcp"


def parse_listen(text: str) -> tuple[str, int]:
    """`[ADDR:]PORT` (IPv6 as `[::1]:9573`) -> (address, port)."""
    address, port_text = DEFAULT_ADDRESS, text.strip()
    if text.startswith("["):
        end = text.find("]:")
        if end < 0:
            raise InvalidInput(f"--http: {text!r} is not [ADDR:]PORT")
        address, port_text = text[1:end], text[end + 2 :]
    elif ":" in text:
        address, port_text = text.rsplit(":", 1)
    if not (port_text.isascii() and port_text.isdigit()) or not 0 < int(port_text) < 65536:
        raise InvalidInput(f"--http: port must be a number from 1 to 65535, got {port_text!r}")
    if address != "localhost":
        import ipaddress

        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise InvalidInput(f"--http: {address!r} is not an IP address") from None
    return address, int(port_text)


def check_policy(options: HttpOptions, *, allow_write: bool) -> list[str]:
    """Refuse (InvalidInput) what must not run; return warnings for what should not."""
    if (options.tls_cert is None) != (options.tls_key is None):
        raise InvalidInput("--tls-cert and --tls-key go together")
    loopback = is_loopback(options.address)
    if options.token_file is None:
        if not loopback:
            raise InvalidInput(
                f"--insecure-no-auth only on a loopback address, not {options.address}"
            )
        if allow_write:
            raise InvalidInput("--insecure-no-auth is read-only: drop --allow-write")
    if not loopback and options.tls_cert is None:
        return [
            f"serving {options.address} without TLS: the token crosses the network in clear "
            "(give --tls-cert and --tls-key)"
        ]
    return []


def allowed_hosts(options: HttpOptions) -> set[str]:
    hosts = set(options.allowed_hosts)
    if options.address in WILDCARDS:
        hosts |= {socket.gethostname(), socket.getfqdn()}
    else:
        hosts.add(options.address)
    return {h.lower() for h in hosts}


def build_app(server: MCPServer, service: McpService, options: HttpOptions) -> Guard:
    from mcp.server.transport_security import TransportSecuritySettings

    from op_dbus.mcp.page import add_page
    from op_dbus.mcp.token import TokenFile

    add_page(server, service, secure=options.tls_cert is not None)
    app = server.streamable_http_app(
        streamable_http_path="/mcp",
        max_request_body_size=MAX_BODY,
        # The Guard checks Host and Origin for every route, the page's too.
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    tokens = None if options.token_file is None else TokenFile(options.token_file)
    return Guard(app, hosts=allowed_hosts(options), tokens=tokens)


class _EmbeddedServer:
    """uvicorn inside a process that handles its own signals (the daemon)."""

    @staticmethod
    @contextlib.contextmanager
    def capture_signals() -> Iterator[None]:
        yield


async def serve_http(
    server: MCPServer, service: McpService, options: HttpOptions, *, embedded: bool = False
) -> None:
    """Serve until cancelled (embedded) or until SIGINT/SIGTERM (standalone)."""
    import uvicorn

    config = uvicorn.Config(
        build_app(server, service, options),
        host=options.address,
        port=options.port,
        ssl_certfile=str(options.tls_cert) if options.tls_cert else None,
        ssl_keyfile=str(options.tls_key) if options.tls_key else None,
        log_level="warning",
        access_log=False,
        limit_concurrency=64,
        timeout_graceful_shutdown=2,
        server_header=False,
    )
    http = uvicorn.Server(config)
    if embedded:
        http.capture_signals = _EmbeddedServer.capture_signals  # type: ignore[method-assign]
    log.info("MCP on %s", options.url)
    await http.serve()
