"""The live page beside the MCP endpoint: read-only, the same token (header or login cookie).

`/` is one static page; `/events` pushes a snapshot (server-sent events) whenever it differs
from the last one sent. The server looks again every `INTERVAL` seconds; inside the daemon
that is a look at its cache, which is re-read only after an event said something changed.
Each bridge, port and container that drifts from what the daemon enforces (its state file
and runtime changes, planned as the daemon looks for drift) carries `data-drift` with the
plan's action for it: `create` (missing), `modify` (differs), `delete` (owned but no longer
declared). The page builds its DOM with `textContent` only: a bridge named like markup stays
text.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)

from op_dbus.errors import OpError
from op_dbus.mcp.guard import COOKIE

if TYPE_CHECKING:
    from mcp.server import MCPServer

    from op_dbus.mcp.service import McpService

INTERVAL = 1.0
MAX_STREAMS = 8
"""Pages watching at once; each costs a look every INTERVAL."""
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; "
    "style-src 'unsafe-inline'; connect-src 'self'; img-src 'self'; form-action 'self'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # "no-referrer" makes a form post's Origin "null"
    "Cache-Control": "no-store",
}

LOGIN = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>op-dbus</title>
<style>body{font:15px system-ui,sans-serif;margin:3em}</style></head>
<body><form method="post" action="/login"><p>op-dbus: paste the token
(<code>op-dbus mcp token</code>)</p><input type="password" name="token" id="token"
autocomplete="off" autofocus> <button id="open">Open</button></form></body></html>"""

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>op-dbus: live</title>
<style>
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.3em} h2{font-size:1.05em;margin-top:1.5em}
.bridges{display:flex;flex-wrap:wrap;gap:1em}
.bridge{border:2px solid #36c;border-radius:8px;padding:.6em 1em;min-width:14em}
.bridge b{font-size:1.1em} .port{margin:.3em 0 .3em 1em}
.ct{display:inline-block;border:1px solid #393;border-radius:4px;padding:0 .4em;margin-left:.4em}
.stopped{border-color:#999;color:#777} .addr{color:#555;font-family:monospace}
.try{background:#fff3cd;border:1px solid #e0b000;padding:.5em 1em;border-radius:6px}
table{border-collapse:collapse} td{padding:.15em .8em .15em 0;vertical-align:top}
#state{color:#777} #against{color:#777;font-size:.9em;margin-bottom:.6em}
.drift{border-color:#c33;border-style:dashed}
.port.drift{color:#a00;border-width:1px;padding:0 .3em}
.mark{background:#c33;color:#fff;border-radius:3px;padding:0 .35em;margin-left:.4em;font-size:.85em}
</style></head><body>
<h1>op-dbus <span id="state">connecting...</span></h1>
<div id="try"></div><div id="skipped"></div>
<h2>Bridges, ports, containers</h2><div id="against"></div>
<div class="bridges" id="bridges"></div>
<h2>Containers</h2><table id="containers"></table>
<h2>Daemon</h2><div id="daemon"></div>
<h2>Ledger (latest first)</h2><table id="ledger"></table>
<script>
"use strict";
let deadline = null;
const MARKS = {create: "missing", modify: "drift", delete: "not declared"};
function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}
function row(cells) {
  const tr = el("tr");
  for (const c of cells) tr.appendChild(el("td", c));
  return tr;
}
function mark(node, drift, where) {
  if (!drift) return;
  node.dataset.drift = drift;
  node.classList.add("drift");
  (where || node).appendChild(el("span", MARKS[drift] || drift, "mark"));
}
function render(s) {
  const bridges = document.getElementById("bridges");
  bridges.replaceChildren();
  for (const b of s.topology.bridges) {
    const box = el("div", null, "bridge");
    box.dataset.bridge = b.name;
    box.appendChild(el("b", b.name));
    mark(box, b.drift);
    if (b.addresses.length) box.appendChild(el("span", " " + b.addresses.join(", "), "addr"));
    for (const p of b.ports) {
      const line = el("div", null, "port");
      line.dataset.port = p.name;
      const vlan = p.vlan === null || p.vlan === undefined ? "" : " vlan " + p.vlan;
      line.appendChild(el("span", p.name + vlan));
      if (p.addresses.length) line.appendChild(el("span", " " + p.addresses.join(", "), "addr"));
      if (p.error) line.appendChild(el("span", " error: " + p.error));
      if (p.container) line.appendChild(el("span", p.container, "ct"));
      mark(line, p.drift);
      box.appendChild(line);
    }
    bridges.appendChild(box);
  }
  const cts = document.getElementById("containers");
  cts.replaceChildren(row(["id", "name", "state", "bridge", "veth", "addresses", ""]));
  for (const c of s.topology.containers) {
    const tr = row([c.id, c.name, c.running ? "running" : "stopped", c.bridge || "-",
                    c.veth || "-", c.addresses.join(", ")]);
    tr.dataset.container = c.name;
    mark(tr, c.drift, tr.appendChild(el("td")));
    cts.appendChild(tr);
  }
  const undrawn = (s.topology.missing || []).filter((r) => {
    const [kind, name] = [r.slice(0, r.indexOf("/")), r.slice(r.indexOf("/") + 1)];
    return !document.querySelector(`[data-${CSS.escape(kind)}="${CSS.escape(name)}"]`);
  });
  document.getElementById("against").textContent = s.marked_against
    ? `drift marked against ${s.marked_against} (what the daemon enforces)` +
      (undrawn.length ? `; missing: ${undrawn.join(", ")}` : "")
    : "drift not marked: no daemon state file to compare with";
  const skipped = Object.entries(s.topology.skipped || {});
  document.getElementById("skipped").textContent =
    skipped.map(([name, why]) => `${name}: cannot be read: ${why}`).join("; ");
  const d = s.daemon;
  document.getElementById("daemon").textContent = d
    ? `pid ${d.pid}, mode ${d.mode}, policy ${d.policy}, state file ${d.state_file || "-"}; ` +
      `drift ${s.drift ? s.drift.events : 0} event(s), ${s.drift ? s.drift.repairs : 0} repair(s)` +
      (s.last_apply ? `; last apply ${s.last_apply.time}: ${s.last_apply.message}` : "")
    : "no daemon: this server reads the host itself";
  const ledger = document.getElementById("ledger");
  ledger.replaceChildren();
  for (const e of s.ledger)
    ledger.appendChild(row([e.index, (e.time || "").slice(0, 19).replace("T", " "),
                            e.kind || e.type, e.subject, e.actor || "", e.result || ""]));
  const t = s.try;
  deadline = t ? Date.now() + t.seconds_left * 1000 : null;
  document.getElementById("try").dataset.actor = t ? t.actor : "";
  tick();
}
function tick() {
  const box = document.getElementById("try");
  if (deadline === null) { box.replaceChildren(); box.className = ""; return; }
  const left = Math.max(0, Math.round((deadline - Date.now()) / 1000));
  box.className = "try";
  box.textContent = `try pending (${box.dataset.actor}): rolled back in ${left} s unless confirmed`;
}
setInterval(tick, 1000);
const source = new EventSource("/events");
source.onmessage = (m) => {
  document.getElementById("state").textContent = "live";
  render(JSON.parse(m.data));
};
source.onerror = () => { document.getElementById("state").textContent = "reconnecting..."; };
</script></body></html>"""


def add_page(server: MCPServer, service: McpService, *, secure: bool) -> None:
    streams = asyncio.Semaphore(MAX_STREAMS)

    @server.custom_route("/", methods=["GET"])
    async def page(request: Request) -> Response:
        return HTMLResponse(PAGE, headers=HEADERS)

    @server.custom_route("/login", methods=["GET", "POST"])
    async def login(request: Request) -> Response:
        if request.method == "GET":
            return HTMLResponse(LOGIN, headers=HEADERS)
        form = await request.form(max_files=0, max_fields=4)
        token = str(form.get("token", ""))
        tokens = request.scope.get("opdbus.tokens")
        if tokens is not None and tokens.check(token) is None:
            return HTMLResponse(LOGIN, status_code=401, headers=HEADERS)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=secure)
        return response

    @server.custom_route("/events", methods=["GET"])
    async def events(request: Request) -> Response:
        if streams.locked():
            return PlainTextResponse("too many pages open\n", status_code=503)

        async def stream() -> AsyncIterator[str]:
            async with streams:
                last = None
                while not await request.is_disconnected():
                    try:
                        text = json.dumps(await service.snapshot(), sort_keys=True, default=str)
                    except OpError as err:
                        text = json.dumps({"error": err.message})
                    if text != last:
                        last = text
                        yield f"data: {text}\n\n"
                    await asyncio.sleep(INTERVAL)

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
        )
