"""The Open_vSwitch database as op-dbus uses it, over the OVSDB client: one place for what the
net and lxc plugins, doctor and the daemon's OVSDB watch share: the owner keys op-dbus marks
rows with, the builders of operations (select, mutate, wait), the datum conversions
(`ovsdb_set`, `optional`, `to_map`/`from_map`), vswitchd's cur_cfg handshake, and the monitor
of the configuration columns.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from op_dbus.native.ovsdb import (
    OvsdbClient,
    OvsdbConnectionError,
    OvsdbError,
    OvsdbOpError,
    OvsdbTimeoutError,
)

VSWITCH_DB = "Open_vSwitch"
"""The database ovs-vswitchd is configured from (also the name of its root table)."""
OWNER_KEY = "op-dbus-owner"
"""The `external_ids` key on the bridges, ports and interfaces the net section created."""
OWNER = "op-dbus"
PORT_OWNER_KEY = "op-dbus-container"
"""The `external_ids` key marking a port as a container's (value: the LXC container name; set
by the lxc hooks too). Not OWNER_KEY: the net plugin treats rows carrying that key as its own
and would remove ports its state file does not list; container ports belong to lxc."""
EMPTY_SET: list[Any] = ["set", []]


def ovsdb_set(value: Any) -> list[Any]:
    """The members of an OVSDB set column (`["set", [...]]` or a bare atom for one member)."""
    if isinstance(value, list) and len(value) == 2 and value[0] == "set":
        return list(value[1])
    return [value]


def optional(value: Any) -> Any:
    """The one value of an optional (0..1) column, or None when empty."""
    members = ovsdb_set(value)
    return members[0] if members else None


def to_map(value: Any) -> dict[str, str]:
    """An OVSDB map column (`["map", [[k, v], ...]]`) as a dict."""
    return dict(value[1]) if isinstance(value, list) and value and value[0] == "map" else {}


def from_map(values: dict[str, str]) -> list[Any]:
    """A dict as an OVSDB map datum (keys sorted: the same dict, the same operation)."""
    return ["map", [[k, v] for k, v in sorted(values.items())]]


def uuids(value: Any) -> list[str]:
    """The uuids of a set-of-references column."""
    return [member[1] for member in ovsdb_set(value)]


def owned(row: dict[str, Any]) -> bool:
    """Whether the net section created this row (OWNER_KEY in its external_ids)."""
    return OWNER_KEY in to_map(row.get("external_ids"))


def select(table: str, *columns: str, where: list[list[Any]] | None = None) -> dict[str, Any]:
    """A `select` of `columns` (and `_uuid`) of the rows matching `where` (default: all)."""
    return {"op": "select", "table": table, "where": where or [], "columns": ["_uuid", *columns]}


def mutate(
    table: str, where: list[list[Any]], column: str, mutator: str, refs: list[list[str]]
) -> dict[str, Any]:
    """A `mutate` inserting or deleting (`mutator`) references (`["uuid", u]` or
    `["named-uuid", n]`) in a set column of the rows matching `where`."""
    return {
        "op": "mutate",
        "table": table,
        "where": where,
        "mutations": [[column, mutator, ["set", refs]]],
    }


def where_uuid(uuid: str) -> list[list[Any]]:
    """A `where` clause selecting the row with this `_uuid`."""
    return [["_uuid", "==", ["uuid", uuid]]]


def wait_op(
    table: str,
    where: list[list[Any]],
    rows: list[dict[str, Any]],
    columns: list[str],
    *,
    timeout: int = 0,
) -> dict[str, Any]:
    """A `wait` operation: the transaction aborts unless the rows matching `where`, projected
    to `columns`, are exactly `rows`, within `timeout` ms.

    With timeout 0 it is an optimistic lock: the caller guards what it read, and a change by
    someone else since then fails the whole transaction instead of being overwritten.
    """
    return {
        "op": "wait",
        "table": table,
        "where": where,
        "columns": columns,
        "until": "==",
        "rows": rows,
        "timeout": timeout,
    }


def is_wait_conflict(error: OvsdbOpError) -> bool:
    """True when a transaction failed because a guarded row changed (a `wait` timed out)."""
    return error.error == "timed out" and (error.op or {}).get("op") == "wait"


async def ovs_summary(client: OvsdbClient) -> dict[str, Any]:
    """Versions and capabilities from the Open_vSwitch row (filled in by ovs-vswitchd)."""
    columns = ["ovs_version", "db_version", "datapath_types", "iface_types"]
    (result,) = await client.transact(
        VSWITCH_DB, {"op": "select", "table": "Open_vSwitch", "where": [], "columns": columns}
    )
    rows = result["rows"]
    if not rows:
        raise OvsdbError("the Open_vSwitch table has no row (database not initialised)")
    row = rows[0]
    return {
        "ovs_version": optional(row["ovs_version"]),
        "db_version": optional(row["db_version"]),
        "datapath_types": sorted(ovsdb_set(row["datapath_types"])),
        "iface_types": sorted(ovsdb_set(row["iface_types"])),
    }


VSWITCHD_LOCK = "ovs_vswitchd"
"""The OVSDB lock ovs-vswitchd holds for as long as it serves a database."""


async def vswitchd_connected(client: OvsdbClient) -> bool:
    """Whether an ovs-vswitchd serves this database now: someone holds its lock.

    Asks for the lock and gives it up at once (queued behind the holder, or granted for a
    round trip when there is none, which would delay a vswitchd starting that instant by as
    much)."""
    reply = await client.request("lock", [VSWITCHD_LOCK])
    await client.request("unlock", [VSWITCHD_LOCK])
    return not (isinstance(reply, dict) and reply.get("locked"))


def next_cfg_ops() -> list[dict[str, Any]]:
    """Operations that ask ovs-vswitchd to report back (as ovs-vsctl does): increment
    `Open_vSwitch.next_cfg`, then read it; vswitchd sets `cur_cfg` to it once it has applied
    everything committed with it."""
    return [
        {"op": "mutate", "table": VSWITCH_DB, "where": [], "mutations": [["next_cfg", "+=", 1]]},
        {"op": "select", "table": VSWITCH_DB, "where": [], "columns": ["next_cfg"]},
    ]


def _cur_cfg(updates: dict[str, Any]) -> int | None:
    """`cur_cfg` from monitor table-updates of the root row (None if they do not carry it).

    `update2` leaves columns at their default out of `initial` and `insert`: there it is 0."""
    for change in updates.get(VSWITCH_DB, {}).values():
        for key in ("initial", "insert", "modify", "new"):
            row = change.get(key)
            if isinstance(row, dict) and ("cur_cfg" in row or key in ("initial", "insert")):
                return int(row.get("cur_cfg", 0))
    return None


async def wait_for_cur_cfg(client: OvsdbClient, next_cfg: int, timeout: float) -> None:
    """Wait, watching a monitor, until ovs-vswitchd's `cur_cfg` reaches `next_cfg`; after
    `timeout` s OvsdbTimeoutError says how far it got."""
    monitor = await client.monitor(VSWITCH_DB, {VSWITCH_DB: ["cur_cfg"]})
    current = _cur_cfg(monitor.initial)
    try:
        async with asyncio.timeout(timeout):
            while current is None or current < next_cfg:
                reported = _cur_cfg(await monitor.__anext__())
                current = current if reported is None else reported
    except TimeoutError as exc:
        raise OvsdbTimeoutError(
            f"ovs-vswitchd has not applied the change within {timeout:.0f} s"
            f" (Open_vSwitch cur_cfg is {current}, waiting for {next_cfg})"
        ) from exc
    finally:
        with contextlib.suppress(OvsdbError):
            await monitor.cancel()


BRIDGE_COLUMNS = ["name", "ports", "datapath_type", "external_ids", "stp_enable", "fail_mode"]
PORT_COLUMNS = [
    *("name", "interfaces", "tag", "trunks", "vlan_mode", "bond_mode", "lacp", "external_ids")
]

CONFIG_TABLES: dict[str, list[str]] = {
    "Open_vSwitch": ["bridges"],
    "Bridge": BRIDGE_COLUMNS,
    "Port": PORT_COLUMNS,
    "Interface": ["name", "type", "options", "external_ids", "mtu_request", "ofport", "error"],
}
"""What the daemon reacts to: configuration columns only, since vswitchd rewrites `statistics`
and `status` all the time and waking up for those would be a busy loop."""
FACT_COLUMNS: dict[str, list[str]] = {
    "Open_vSwitch": ["datapath_types", "next_cfg", "cur_cfg"],
    "Interface": ["mtu"],
}
"""Also kept in the replica, for reading from it and for waiting for vswitchd, but no drift:
a change of these alone wakes nobody."""
REPLICA_TABLES = {
    table: columns + FACT_COLUMNS.get(table, []) for table, columns in CONFIG_TABLES.items()
}


class Replica:
    """The rows of REPLICA_TABLES as the daemon's monitor last reported them, in the shape
    `select` returns (with `_uuid`): the daemon plans and verifies from it instead of reading
    the whole database for every repair. A plain `monitor` (RFC 7047 `update`) sends every
    monitored column of a row that changed, so an update simply replaces rows."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[str, dict[str, Any]]] = {t: {} for t in REPLICA_TABLES}
        self._changed = asyncio.Condition()

    def root(self) -> dict[str, Any] | None:
        return next(iter(self.tables[VSWITCH_DB].values()), None)

    async def update(self, updates: dict[str, Any]) -> bool:
        """Apply one update; whether it changed a configuration column (drift to look at)."""
        config = False
        for table, rows in updates.items():
            kept, watched = self.tables[table], set(CONFIG_TABLES[table])
            for uuid, change in rows.items():
                new, old = change.get("new"), change.get("old") or {}
                if new is None:
                    config |= kept.pop(uuid, None) is not None
                    continue
                config |= uuid not in kept or not watched.isdisjoint(old)
                kept[uuid] = {**new, "_uuid": ["uuid", uuid]}
        async with self._changed:
            self._changed.notify_all()
        return config

    async def wait_cur_cfg(self, next_cfg: int, timeout: float) -> None:
        """Until the replica shows vswitchd's `cur_cfg` at `next_cfg` or beyond: vswitchd has
        applied that change and the replica holds what it reported (ofport, error)."""

        def reached() -> bool:
            return int((self.root() or {}).get("cur_cfg", 0)) >= next_cfg

        try:
            async with asyncio.timeout(timeout), self._changed:
                await self._changed.wait_for(reached)
        except TimeoutError as exc:
            raise OvsdbTimeoutError(
                f"ovs-vswitchd has not applied the change within {timeout:.0f} s"
                f" (Open_vSwitch cur_cfg is {(self.root() or {}).get('cur_cfg')},"
                f" waiting for {next_cfg})"
            ) from exc


_REPLICAS: dict[str, Replica] = {}


def live_replica(target: str) -> Replica | None:
    """The replica a monitor of this process keeps of `target` now (the daemon's watch), or
    None (the CLI, or the watch is reconnecting)."""
    return _REPLICAS.get(target)


def config_session(
    target: str, changed: Callable[[str], None]
) -> Callable[[Callable[[], None]], Awaitable[None]]:
    """A `monitor` on REPLICA_TABLES that keeps the target's Replica while it runs, and says
    `changed("ovsdb <tables>")` on every update of a configuration column, until the
    connection is lost (then it raises, for the daemon's supervisor to reconnect)."""

    async def session(connected: Callable[[], None]) -> None:
        replica = Replica()
        async with OvsdbClient() as client:
            await client.connect(target)
            monitor = await client.monitor(VSWITCH_DB, dict(REPLICA_TABLES), conditional=False)
            await replica.update(monitor.initial)
            _REPLICAS[target] = replica
            try:
                connected()
                async for update in monitor:
                    if await replica.update(update):
                        changed(f"ovsdb {'/'.join(sorted(update))}")
            finally:
                if _REPLICAS.get(target) is replica:
                    del _REPLICAS[target]
        raise OvsdbConnectionError("monitor ended")

    return session
