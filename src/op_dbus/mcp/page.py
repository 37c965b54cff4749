"""The live page beside the MCP endpoint: read-only, same token (header or login cookie)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from op_dbus.mcp.guard import COOKIE

if TYPE_CHECKING:
    from mcp.server import MCPServer

    from op_dbus.mcp.service import McpService

LOGIN = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>op-dbus</title></head>
<body><form method="post" action="/login"><p>op-dbus: the token (<code>op-dbus mcp token</code>)</p>
<input type="password" name="token" autocomplete="off" autofocus> <button>Open</button></form>
</body></html>"""


def add_page(server: MCPServer, service: McpService, *, secure: bool) -> None:
    @server.custom_route("/login", methods=["GET", "POST"])
    async def login(request: Request) -> Response:
        if request.method == "GET":
            return HTMLResponse(LOGIN)
        form = await request.form()
        token = str(form.get("token", ""))
        guard_tokens = request.scope.get("opdbus.tokens")
        if guard_tokens is not None and guard_tokens.check(token) is None:
            return HTMLResponse(LOGIN, status_code=401)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=secure)
        return response
