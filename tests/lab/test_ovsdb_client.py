"""OvsdbClient's monitors, `wait` guards and reconnects against a real, private ovsdb-server."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from native_fixtures import VSWITCH_SCHEMA, PrivateOvs, require

from op_dbus.lab.ovs import wait_until
from op_dbus.lab.private_ovs import accepts, stop_child
from op_dbus.native.ovsdb import OvsdbClient, OvsdbConnectionError, OvsdbOpError, OvsdbTimeoutError
from op_dbus.native.vswitch import VSWITCH_DB, is_wait_conflict, wait_op, where_uuid


async def client_for(target: str) -> OvsdbClient:
    client = OvsdbClient(timeout=5)
    await client.connect(target)
    return client


def rows_by_name(table_updates: dict, table: str) -> dict[str, dict]:
    """name -> change, for update2 (`initial`/`insert`/`modify`/`delete`) or update (`new`)."""
    found = {}
    for uuid, change in table_updates.get(table, {}).items():
        body = next(iter(change.values())) if change else {}
        found[body.get("name", uuid)] = change
    return found


async def test_monitor_cond_reports_initial_insert_modify_delete(ovs: PrivateOvs) -> None:
    ovs.vsctl("add-br", "br-a")
    client = await client_for(ovs.target)
    try:
        monitor = await client.monitor(VSWITCH_DB, {"Bridge": ["name", "external_ids"]})
        assert set(rows_by_name(monitor.initial, "Bridge")) == {"br-a"}
        assert "initial" in rows_by_name(monitor.initial, "Bridge")["br-a"]

        ovs.vsctl("add-br", "br-b")
        inserted = rows_by_name(await monitor.next(5), "Bridge")
        assert inserted["br-b"]["insert"]["name"] == "br-b"

        ovs.vsctl("set", "Bridge", "br-b", "external_ids:k=v")
        (change,) = (await monitor.next(5))["Bridge"].values()
        assert change["modify"]["external_ids"] == ["map", [["k", "v"]]]

        ovs.vsctl("del-br", "br-a")
        (change,) = (await monitor.next(5))["Bridge"].values()
        assert "delete" in change

        await monitor.cancel()
        assert [update async for update in monitor] == []
        assert await client.echo("alive") == ["alive"]
    finally:
        await client.close()


async def test_plain_monitor_and_conditions(ovs: PrivateOvs) -> None:
    client = await client_for(ovs.target)
    try:
        plain = await client.monitor(VSWITCH_DB, {"Bridge": ["name"]}, conditional=False)
        only_b = await client.monitor(
            VSWITCH_DB, {"Bridge": ["name"]}, where={"Bridge": [["name", "==", "br-b"]]}
        )
        ovs.vsctl("add-br", "br-a")
        (change,) = (await plain.next(5))["Bridge"].values()
        assert change == {"new": {"name": "br-a"}}
        with pytest.raises(OvsdbTimeoutError):
            await only_b.next(0.3)  # br-a does not match its condition
        ovs.vsctl("add-br", "br-b")
        assert set(rows_by_name(await only_b.next(5), "Bridge")) == {"br-b"}
    finally:
        await client.close()


async def test_wait_guard_refuses_a_transaction_after_a_concurrent_change(
    ovs: PrivateOvs,
) -> None:
    ovs.vsctl("add-br", "br-a")
    client = await client_for(ovs.target)
    try:
        (read,) = await client.transact(
            VSWITCH_DB,
            {"op": "select", "table": "Bridge", "where": [], "columns": ["_uuid", "external_ids"]},
        )
        row = read["rows"][0]
        ovs.vsctl("set", "Bridge", "br-a", "external_ids:theirs=1")  # someone else, meanwhile
        guard = wait_op(
            "Bridge",
            where_uuid(row["_uuid"][1]),
            [{"external_ids": row["external_ids"]}],
            ["external_ids"],
        )
        update = {
            "op": "update",
            "table": "Bridge",
            "where": where_uuid(row["_uuid"][1]),
            "row": {"external_ids": ["map", [["mine", "1"]]]},
        }
        with pytest.raises(OvsdbOpError) as caught:
            await client.transact(VSWITCH_DB, guard, update)
        assert is_wait_conflict(caught.value) and caught.value.index == 0
        assert "theirs=1" in ovs.vsctl("get", "Bridge", "br-a", "external_ids").replace('"', "")
        assert "mine" not in ovs.vsctl("get", "Bridge", "br-a", "external_ids")

        fresh = {"external_ids": ["map", [["theirs", "1"]]]}
        guard = wait_op("Bridge", where_uuid(row["_uuid"][1]), [fresh], ["external_ids"])
        await client.transact(VSWITCH_DB, guard, update)  # guarded by what is there now: accepted
        assert "mine" in ovs.vsctl("get", "Bridge", "br-a", "external_ids")
    finally:
        await client.close()


def start_server(directory: Path) -> subprocess.Popen[bytes]:
    """An ovsdb-server (our child) on DIR/db.sock, creating the database on first use."""
    conf = directory / "conf.db"
    if not conf.exists():
        subprocess.run(["ovsdb-tool", "create", str(conf), VSWITCH_SCHEMA], check=True)
    return subprocess.Popen(
        [
            *("ovsdb-server", str(conf), f"--remote=punix:{directory}/db.sock"),
            *(f"--unixctl={directory}/ctl", "-vconsole:off", "--no-chdir"),
        ]
    )


@contextlib.contextmanager
def server_dir() -> Iterator[Path]:
    require("ovsdb-tool", "ovsdb-server")
    with tempfile.TemporaryDirectory(prefix="opdbus-rc-") as name:
        yield Path(name)


async def test_connect_retries_with_backoff_until_the_server_is_up() -> None:
    with server_dir() as directory:
        target = f"unix:{directory}/db.sock"
        with pytest.raises(OvsdbConnectionError):
            await OvsdbClient().connect(target, retries=2, backoff=0.01)
        server = None
        try:
            client = OvsdbClient(timeout=5)
            task = asyncio.create_task(client.connect(target, retries=20, backoff=0.05))
            await asyncio.sleep(0.3)
            assert not task.done()  # still backing off: nothing listens yet
            server = start_server(directory)
            await asyncio.wait_for(task, 10)
            assert VSWITCH_DB in await client.list_dbs()
            await client.close()
        finally:
            if server is not None:
                stop_child(server)


async def test_monitor_ends_on_server_death_and_reconnect_resumes() -> None:
    with server_dir() as directory:
        server = start_server(directory)
        client = OvsdbClient(timeout=5)
        try:
            await client.connect(f"unix:{directory}/db.sock", retries=50, backoff=0.02)
            monitor = await client.monitor(VSWITCH_DB, {"Open_vSwitch": None})
            stop_child(server, signal.SIGKILL)
            with pytest.raises(OvsdbConnectionError):
                await asyncio.wait_for(monitor.__anext__(), 5)
            with pytest.raises(OvsdbConnectionError):
                await client.echo()

            server = start_server(directory)
            await client.reconnect(retries=50, backoff=0.02)
            assert await client.echo(1) == [1]
            again = await client.monitor(VSWITCH_DB, {"Open_vSwitch": None})
            assert isinstance(again.initial, dict)
        finally:
            await client.close()
            stop_child(server)


async def test_net_plugin_reads_again_after_ovsdb_server_restarts() -> None:
    from op_dbus.endpoints import Endpoints
    from op_dbus.plugins.net.plugin import NetPlugin

    with server_dir() as directory:
        server = start_server(directory)
        plugin = NetPlugin(endpoints=Endpoints(ovsdb=f"unix:{directory}/db.sock"))
        try:
            wait_until(lambda: accepts(directory / "db.sock"), "ovsdb-server")
            subprocess.run(
                ["ovs-vsctl", f"--db=unix:{directory}/db.sock", "--no-wait", "init"], check=True
            )
            assert (await plugin.query())["interfaces"] == []
            stop_child(server, signal.SIGKILL)
            server = start_server(directory)
            wait_until(lambda: accepts(directory / "db.sock"), "ovsdb-server")
            subprocess.run(
                ["ovs-vsctl", f"--db=unix:{directory}/db.sock", "--no-wait", "add-br", "br-x"],
                check=True,
            )
            names = [e["name"] for e in (await plugin.query())["interfaces"]]
            assert names == ["br-x"]
        finally:
            await plugin.close()
            stop_child(server)
