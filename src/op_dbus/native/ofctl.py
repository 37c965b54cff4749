"""A bridge's OpenFlow table through `ovs-ofctl`, on the bridge's management socket.

Flows live in ovs-vswitchd, not in OVSDB; vswitchd serves each bridge's OpenFlow on
`<rundir>/<bridge>.mgmt`. `ovs-ofctl --bundle add-flows` sends one OpenFlow 1.4 bundle: the
switch commits all of its adds and deletes or none. Argv lists only, no shell; the flow text
comes from validated models (plugins/net/openflow.py) and is fed on stdin.
"""

from __future__ import annotations

from pathlib import Path

from op_dbus.native.tool import ToolError, find_tool, run_tool

OFCTL = "ovs-ofctl"
PROTOCOL = "OpenFlow14"
"""The first OpenFlow version with bundles."""
TIMEOUT = 30.0
OUTPUT_MAX = 64 * 1024 * 1024
"""The most of one `dump-flows` read, bounded before parsing."""


class OfctlError(Exception):
    """ovs-ofctl could not be run, or the switch refused; the message is ovs-ofctl's own."""


def target(rundir: str, bridge: str) -> str:
    """The bridge's management socket, as ovs-ofctl takes it."""
    return f"unix:{Path(rundir) / bridge}.mgmt"


async def _ofctl(args: list[str], stdin: bytes | None = None) -> str:
    try:
        out = await run_tool(
            [find_tool(OFCTL, "openvswitch-common"), "-O", PROTOCOL, *args],
            stdin,
            what=f"{OFCTL} {' '.join(args[:2])}",
            timeout=TIMEOUT,
            output_max=OUTPUT_MAX,
        )
    except ToolError as exc:
        raise OfctlError(str(exc)) from None
    return out.decode(errors="replace")


async def dump_flows(rundir: str, bridge: str, cookie: int) -> list[str]:
    """The bridge's flows carrying exactly `cookie`, one line each, with port names."""
    args = ["--no-stats", "--names", "dump-flows", target(rundir, bridge), f"cookie={cookie:#x}/-1"]
    return [line.strip() for line in (await _ofctl(args)).splitlines() if line.strip()]


async def bundle(rundir: str, bridge: str, lines: list[str]) -> None:
    """Send `lines` (`add ...`, `delete ...`) to the bridge as one atomic bundle."""
    text = "".join(f"{line}\n" for line in lines).encode()
    await _ofctl(["--bundle", "add-flows", target(rundir, bridge), "-"], text)
