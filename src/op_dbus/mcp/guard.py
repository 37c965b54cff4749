"""The HTTP server's front door, before any route runs: Host, Origin, token, body size.

- Host: only names this server is meant to be reached by (DNS rebinding: a page of another
  site that resolves its own name to this address sends its own name as Host) -> else 421.
- Origin: a browser's cross-site request carries a foreign Origin -> 403.
- Token: `Authorization: Bearer <token>`; the live page (and only it) may use the cookie the
  login form sets (GET only, SameSite=Strict) -> else 401. The token's id goes into the ASGI scope
  (`opdbus.token_id`) for the ledger's actor.
- Body: bounded before anything parses it, declared or chunked -> 413 (the SDK's limiter).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from http.cookies import SimpleCookie
from urllib.parse import urlsplit

from mcp.server.transport_security import RequestBodyLimitMiddleware
from starlette.datastructures import Headers
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from op_dbus.mcp.token import TokenFile

COOKIE = "opdbus_mcp"
OPEN_PATHS = frozenset({"/login"})
"""Served without a token (the login form itself)."""
COOKIE_PATHS = frozenset({"/", "/events"})
"""Where the login cookie opens (the live page); never /mcp."""
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
MAX_BODY = 1024 * 1024
MAX_HEADER_VALUE = 8192


def hostname(host: str) -> str:
    """The name part of a Host header value (`[::1]:9573` -> `::1`), lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else ""
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def is_loopback(address: str) -> bool:
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


class Guard:
    """ASGI middleware in front of the whole app (MCP endpoint and live page)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        hosts: Iterable[str],
        tokens: TokenFile | None,
    ) -> None:
        self.app = RequestBodyLimitMiddleware(app, MAX_BODY)
        self.hosts = frozenset(h.lower() for h in hosts) | LOOPBACK_NAMES
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            return
        refusal = self.refuse(scope)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def refuse(self, scope: Scope) -> Response | None:
        headers = Headers(scope=scope)
        if any(len(value) > MAX_HEADER_VALUE for value in headers.values()):
            return PlainTextResponse("request header too large\n", status_code=431)
        if hostname(headers.get("host", "")) not in self.hosts:
            return PlainTextResponse(
                "unknown Host: this server is not reached by that name\n", status_code=421
            )
        origin = headers.get("origin")
        if origin is not None and (urlsplit(origin).hostname or "") not in self.hosts:
            return PlainTextResponse("cross-origin request refused\n", status_code=403)
        if scope["path"] in OPEN_PATHS:  # the login form checks the token itself
            scope["opdbus.tokens"] = self.tokens
            return None
        if self.tokens is None:
            scope["opdbus.token_id"] = "no-auth"
            return None
        token_id = self._authenticate(headers, scope["method"], scope["path"])
        if token_id is None:
            return unauthorized(scope)
        scope["opdbus.token_id"] = token_id
        return None

    def _authenticate(self, headers: Headers, method: str, path: str) -> str | None:
        assert self.tokens is not None
        auth = headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            return self.tokens.check(auth[7:].strip())
        if method == "GET" and path in COOKIE_PATHS and (raw := headers.get("cookie")):
            cookie: SimpleCookie = SimpleCookie()
            try:
                cookie.load(raw)
            except Exception:
                return None
            if COOKIE in cookie:
                return self.tokens.check(cookie[COOKIE].value)
        return None


def unauthorized(scope: Scope) -> Response:
    if scope["method"] == "GET" and scope["path"] == "/":
        from starlette.responses import RedirectResponse

        return RedirectResponse("/login", status_code=303)
    return PlainTextResponse(
        "a bearer token is needed: `op-dbus mcp token` prints it\n",
        status_code=401,
        headers={"WWW-Authenticate": 'Bearer realm="op-dbus"'},
    )
