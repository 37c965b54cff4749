"""Drift made on purpose, for tests and benchmarks of the daemon's repairs."""

from __future__ import annotations

import asyncio


async def keep_deleting_port(db: str, bridge: str, port: str, times: int) -> None:
    """Another tool, as fast as it gets: delete `port` from `bridge` the moment it is there
    (so during the daemon's repair, before its verify), `times` times, about 50 ms apart;
    `db` is the OVSDB target."""
    from op_dbus.native.ovsdb import OvsdbClient

    async with OvsdbClient() as client:
        await client.connect(db)
        monitor = await client.monitor("Open_vSwitch", {"Port": ["name"]}, conditional=False)
        names = {uuid: row["new"]["name"] for uuid, row in monitor.initial["Port"].items()}
        for _ in range(times):
            while port not in names.values():
                for uuid, change in (await monitor.next(10.0)).get("Port", {}).items():
                    if change.get("new"):
                        names[uuid] = change["new"]["name"]
                    else:
                        names.pop(uuid, None)
            uuid = next(u for u, name in names.items() if name == port)
            delete = [["ports", "delete", ["uuid", uuid]]]
            where = [["name", "==", bridge]]
            op = {"op": "mutate", "table": "Bridge", "where": where, "mutations": delete}
            await client.transact("Open_vSwitch", op)
            names.pop(uuid)
            await asyncio.sleep(0.05)
