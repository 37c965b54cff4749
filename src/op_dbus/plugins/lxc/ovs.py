"""Container ports in OVSDB: which bridge each veth is on, and moving or removing them live.

liblxc's hooks attach a container's port at start and remove it at stop; these operations
cover what happens while it runs (moved to another bridge, port deleted by hand) and ports
left behind by a container that died without running its stop hook.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from op_dbus.native.ovsdb import OvsdbClient
from op_dbus.native.vswitch import (
    PORT_OWNER_KEY,
    VSWITCH_DB,
    from_map,
    mutate,
    ovsdb_set,
    select,
    to_map,
    wait_op,
    where_uuid,
)


@dataclass(frozen=True)
class PortRow:
    name: str
    uuid: str
    bridge: str
    bridge_uuid: str
    container: str | None
    """The container whose port this is (external_ids), None for ports op-dbus did not add."""
    protected: bool = False
    """OVS `Port.protected`: it forwards to no other protected port of its bridge."""


async def read_ports(client: OvsdbClient) -> dict[str, PortRow]:
    """Every port on a bridge, by name, read in one transaction."""
    bridges, ports = await client.transact(
        VSWITCH_DB,
        select("Bridge", "name", "ports"),
        select("Port", "name", "external_ids", "protected"),
    )
    port_rows = {row["_uuid"][1]: row for row in ports["rows"]}
    found: dict[str, PortRow] = {}
    for bridge in bridges["rows"]:
        for member in ovsdb_set(bridge["ports"]):
            row = port_rows.get(member[1])
            if row is None or row["name"] == bridge["name"]:
                continue
            found[row["name"]] = PortRow(
                row["name"],
                member[1],
                bridge["name"],
                bridge["_uuid"][1],
                to_map(row["external_ids"]).get(PORT_OWNER_KEY),
                row["protected"] is True,
            )
    return found


async def read_bridges(client: OvsdbClient) -> set[str]:
    """The names of the host's OVS bridges."""
    (reply,) = await client.transact(VSWITCH_DB, select("Bridge", "name"))
    return {row["name"] for row in reply["rows"]}


def _remove_op(port: PortRow) -> dict[str, Any]:
    return mutate("Bridge", where_uuid(port.bridge_uuid), "ports", "delete", [["uuid", port.uuid]])


async def attach(
    client: OvsdbClient, bridge: str, port: str, container: str, protected: bool = False
) -> None:
    """Put `port` on `bridge` (off any other first), marked as `container`'s, in one transaction.

    Fails, changing nothing, when `bridge` does not exist."""
    ops: list[dict[str, Any]] = [
        wait_op("Bridge", [["name", "==", bridge]], [{"name": bridge}], ["name"])
    ]
    if (old := (await read_ports(client)).get(port)) is not None:
        ops.append(_remove_op(old))
    ops += [
        {"op": "insert", "table": "Interface", "row": {"name": port}, "uuid-name": "iface"},
        {
            "op": "insert",
            "table": "Port",
            "row": {
                "name": port,
                "interfaces": ["named-uuid", "iface"],
                "external_ids": from_map({PORT_OWNER_KEY: container}),
                "protected": protected,
            },
            "uuid-name": "port",
        },
        mutate("Bridge", [["name", "==", bridge]], "ports", "insert", [["named-uuid", "port"]]),
    ]
    await client.transact(VSWITCH_DB, *ops)


async def set_protected(client: OvsdbClient, port: str, protected: bool) -> None:
    """Set `Port.protected` of a container's port live (nothing to do when it has none)."""
    if (row := (await read_ports(client)).get(port)) is not None:
        update = {"op": "update", "table": "Port", "where": where_uuid(row.uuid)}
        await client.transact(VSWITCH_DB, update | {"row": {"protected": protected}})


async def detach(client: OvsdbClient, port: str) -> None:
    """Take `port` off its bridge (nothing to do when it is on none)."""
    if (old := (await read_ports(client)).get(port)) is not None:
        await client.transact(VSWITCH_DB, _remove_op(old))
