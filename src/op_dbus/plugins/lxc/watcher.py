"""LXC drift events: `lxc-monitor` on the LXC path, which liblxc's container monitors tell of
every state change, and OVSDB updates (the containers' ports; native/vswitch.py). Only settled
states trigger a check: acting on STOPPING or STARTING would race the transition. (The safety
poll covers configuration edits, which it does not report.)
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import Callable

from op_dbus.native.tool import tool_environment
from op_dbus.native.vswitch import config_session
from op_dbus.plugins.base import Changed, Session, Watch, WatchContext

_STATE = re.compile(r"^'(?P<name>.*)' changed state to \[(?P<state>[A-Z]+)\]$")
SETTLED = frozenset({"RUNNING", "STOPPED"})


def settled_change(line: str) -> str | None:
    """`name STATE` for a line of lxc-monitor announcing a settled state, else None."""
    match = _STATE.match(line.strip())
    if match is None or match["state"] not in SETTLED:
        return None
    return f"{match['name']} {match['state']}"


def lxc_session(lxc_path: str, changed: Changed) -> Session:
    async def session(connected: Callable[[], None]) -> None:
        proc = await asyncio.create_subprocess_exec(
            "lxc-monitor", "-P", lxc_path, "-n", ".*",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            env=tool_environment(),
        )  # fmt: skip
        try:
            assert proc.stdout is not None
            connected()
            while line := await proc.stdout.readline():
                if (change := settled_change(line.decode(errors="replace"))) is not None:
                    changed(f"lxc {change}")
        finally:
            if proc.returncode is None:
                proc.terminate()
                await proc.wait()

    return session


def watches(ctx: WatchContext) -> list[Watch]:
    target, lxc_path = ctx.endpoints.ovsdb, ctx.endpoints.lxc_path
    found = [Watch(f"OVSDB {target}", lambda changed: config_session(target, changed), True)]
    if shutil.which("lxc-monitor"):  # else the daemon's safety poll is all there is
        found.append(
            Watch(f"lxc-monitor {lxc_path}", lambda changed: lxc_session(lxc_path, changed))
        )
    return found
