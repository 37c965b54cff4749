"""The Open_vSwitch database as op-dbus uses it, over the OVSDB client.

Shared by the net and lxc plugins, doctor and the daemon's OVSDB watch.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from op_dbus.native.ovsdb import VSWITCH_DB, OvsdbClient, OvsdbConnectionError

BRIDGE_COLUMNS = ["name", "ports", "datapath_type", "external_ids", "stp_enable", "fail_mode"]
PORT_COLUMNS = ["name", "interfaces", "tag", "external_ids"]

CONFIG_TABLES: dict[str, list[str] | None] = {
    "Open_vSwitch": ["bridges"],
    "Bridge": BRIDGE_COLUMNS,
    "Port": PORT_COLUMNS,
    "Interface": ["name", "type", "options", "external_ids", "mtu_request", "ofport", "error"],
}
"""What the daemon monitors: configuration columns only, since vswitchd rewrites `statistics`
and `status` all the time and waking up for those would be a busy loop."""


def config_session(
    target: str, changed: Callable[[str], None]
) -> Callable[[Callable[[], None]], Awaitable[None]]:
    """A `monitor_cond` on CONFIG_TABLES: `changed("ovsdb <tables>")` on every update, until
    the connection is lost (then it raises, for the daemon's supervisor to reconnect)."""

    async def session(connected: Callable[[], None]) -> None:
        async with OvsdbClient() as client:
            await client.connect(target)
            monitor = await client.monitor(VSWITCH_DB, CONFIG_TABLES)
            connected()
            async for update in monitor:
                changed(f"ovsdb {'/'.join(sorted(update))}")
        raise OvsdbConnectionError("monitor ended")

    return session
