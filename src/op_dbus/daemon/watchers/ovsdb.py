"""OVSDB drift events: a `monitor_cond` on the rows the net and lxc sections are made of.

Only configuration columns are monitored: vswitchd rewrites `statistics` and `status` all the
time, and waking up for those would be a busy loop.
"""

from __future__ import annotations

from collections.abc import Callable

from op_dbus.daemon.watchers import Session, Trigger
from op_dbus.native.ovsdb import VSWITCH_DB, OvsdbClient, OvsdbConnectionError
from op_dbus.plugins.net_ovs import BRIDGE_COLUMNS, PORT_COLUMNS

TABLES: dict[str, list[str] | None] = {
    "Open_vSwitch": ["bridges"],
    "Bridge": BRIDGE_COLUMNS,
    "Port": PORT_COLUMNS,
    "Interface": ["name", "type", "options", "external_ids", "mtu_request", "ofport", "error"],
}
SECTIONS = frozenset({"net", "lxc"})


def ovsdb_session(target: str, trigger: Trigger) -> Session:
    async def session(connected: Callable[[], None]) -> None:
        async with OvsdbClient() as client:
            await client.connect(target)
            monitor = await client.monitor(VSWITCH_DB, TABLES)
            connected()
            async for update in monitor:
                trigger(SECTIONS, f"ovsdb {'/'.join(sorted(update))}")
        raise OvsdbConnectionError("monitor ended")

    return session
