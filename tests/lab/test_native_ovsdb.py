"""OvsdbClient against a real, private ovsdb-server, cross-checked with ovs-vsctl.

Most tests share one server (`shared_ovs`); those that kill or reconfigure it take their own
(`ovs`, from conftest).
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
from native_fixtures import PrivateOvs, private_ovs

from op_dbus.native.ovsdb import (
    OvsdbClient,
    OvsdbConnectionError,
    OvsdbOpError,
    OvsdbRpcError,
    OvsdbTimeoutError,
)
from op_dbus.native.vswitch import (
    VSWITCH_DB,
    next_cfg_ops,
    ovs_summary,
    vswitchd_connected,
    wait_for_cur_cfg,
    wait_op,
)

REMOTE_RETRIES = 7
"""Connection attempts (about 5 s in all) while the server opens a remote it was just given."""


@pytest.fixture(scope="module")
def shared_ovs() -> Iterator[PrivateOvs]:
    with private_ovs() as instance:
        yield instance


async def connected(target: str, *, retries: int = 0, **kwargs: float) -> OvsdbClient:
    client = OvsdbClient(**kwargs)
    await client.connect(target, retries=retries)
    return client


def add_bridge_ops(name: str, **row: object) -> tuple[dict, dict]:
    """Insert a Bridge and hang it off the root row (otherwise OVSDB garbage-collects it)."""
    return (
        {"op": "insert", "table": "Bridge", "row": {"name": name, **row}, "uuid-name": "br"},
        {
            "op": "mutate",
            "table": "Open_vSwitch",
            "where": [],
            "mutations": [["bridges", "insert", ["set", [["named-uuid", "br"]]]]],
        },
    )


def blocking_wait(timeout: int = 60_000) -> dict:
    """A `wait` until the table has no rows, which never happens (`timeout` ms server-side)."""
    return wait_op("Open_vSwitch", [], [], ["bridges"], timeout=timeout)


async def test_list_dbs_and_schema(shared_ovs: PrivateOvs) -> None:
    async with await connected(shared_ovs.target) as client:
        assert set(await client.list_dbs()) >= {"Open_vSwitch", "_Server"}
        schema = await client.get_schema(VSWITCH_DB)
    assert schema["name"] == "Open_vSwitch"
    assert {"Bridge", "Port", "Interface"} <= set(schema["tables"])


async def test_echo_and_many_concurrent_requests_get_their_own_replies(
    shared_ovs: PrivateOvs,
) -> None:
    async with await connected(shared_ovs.target) as client:
        replies = await asyncio.gather(*(client.echo(i, f"payload-{i}") for i in range(50)))
    assert replies == [[i, f"payload-{i}"] for i in range(50)]


async def test_transact_insert_bridge_is_seen_by_ovs_vsctl(shared_ovs: PrivateOvs) -> None:
    async with await connected(shared_ovs.target) as client:
        results = await client.transact(VSWITCH_DB, *add_bridge_ops("br-native"))
    bridge_uuid = results[0]["uuid"][1]
    assert "br-native" in shared_ovs.vsctl("list-br").split()
    assert shared_ovs.vsctl("get", "Bridge", "br-native", "_uuid").strip() == bridge_uuid


async def test_failing_op_names_its_index_and_nothing_is_committed(shared_ovs: PrivateOvs) -> None:
    timed_out_wait = blocking_wait(timeout=0)
    async with await connected(shared_ovs.target) as client:
        with pytest.raises(OvsdbOpError) as caught:
            await client.transact(VSWITCH_DB, *add_bridge_ops("br-never"), timed_out_wait)
    assert caught.value.index == 2
    assert caught.value.op is not None and caught.value.op["op"] == "wait"
    assert caught.value.error == "timed out"
    assert "operation 2 (wait on Open_vSwitch)" in str(caught.value)
    assert "br-never" not in shared_ovs.vsctl("list-br").split()


async def test_commit_failure_is_reported_after_the_last_op(shared_ovs: PrivateOvs) -> None:
    dangling = ["set", [["uuid", str(uuid.uuid4())]]]
    ops = add_bridge_ops("br-dangling", ports=dangling)
    async with await connected(shared_ovs.target) as client:
        with pytest.raises(OvsdbOpError) as caught:
            await client.transact(VSWITCH_DB, *ops)
    assert caught.value.index == len(ops)
    assert caught.value.op is None
    assert "referential integrity" in caught.value.error
    assert "br-dangling" not in shared_ovs.vsctl("list-br").split()


async def test_unknown_database_is_an_rpc_error(shared_ovs: PrivateOvs) -> None:
    async with await connected(shared_ovs.target) as client:
        with pytest.raises(OvsdbRpcError, match="unknown database"):
            await client.get_schema("No_Such_DB")
        assert await client.echo("still usable") == ["still usable"]


async def test_large_reply_in_many_chunks(shared_ovs: PrivateOvs) -> None:
    """A reply far larger than one socket read is reassembled exactly."""
    ids = {f"k{i}": "v" * 200 + 'quote" brace} é' for i in range(200)}
    async with await connected(shared_ovs.target) as client:
        for n in range(40):
            await client.transact(
                VSWITCH_DB, *add_bridge_ops(f"br-big{n}", external_ids=["map", list(ids.items())])
            )
        (result,) = await client.transact(
            VSWITCH_DB, {"op": "select", "table": "Bridge", "where": []}
        )
    big = [row for row in result["rows"] if row["name"].startswith("br-big")]
    assert len(big) == 40
    assert all(dict(row["external_ids"][1]) == ids for row in big)


async def test_request_timeout_leaves_the_connection_usable(shared_ovs: PrivateOvs) -> None:
    async with await connected(shared_ovs.target) as client:
        started = time.monotonic()
        with pytest.raises(OvsdbTimeoutError):
            await client.transact(VSWITCH_DB, blocking_wait(), timeout=0.3)
        assert time.monotonic() - started < 2
        assert await client.echo(1) == [1]


async def test_server_killed_mid_request_fails_pending_promptly(ovs: PrivateOvs) -> None:
    client = await connected(ovs.target, timeout=30)
    try:
        pending = asyncio.create_task(client.transact(VSWITCH_DB, blocking_wait()))
        await asyncio.sleep(0.2)
        assert not pending.done()
        ovs.kill_server()
        with pytest.raises(OvsdbConnectionError):
            await asyncio.wait_for(pending, 5)
        with pytest.raises(OvsdbConnectionError):
            await asyncio.wait_for(client.echo(), 1)
    finally:
        await client.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_tcp_target(shared_ovs: PrivateOvs) -> None:
    port = free_port()
    ctl = str(shared_ovs.dir / "ovsdb-server.ctl")
    remote = f"ptcp:{port}:127.0.0.1"
    subprocess.run(["ovs-appctl", "-t", ctl, "ovsdb-server/add-remote", remote], check=True)
    async with await connected(f"tcp:127.0.0.1:{port}", retries=REMOTE_RETRIES) as client:
        assert VSWITCH_DB in await client.list_dbs()


async def test_server_echo_probes_are_answered(ovs: PrivateOvs) -> None:
    """With a 1 s inactivity probe the server echoes an idle client and drops it if silent."""
    port = free_port()
    ovs.vsctl(
        *("--", "--id=@m", "create", "Manager", f'target="ptcp:{port}:127.0.0.1"'),
        *("inactivity_probe=1000", "--", "set", "Open_vSwitch", ".", "manager_options=@m"),
    )
    async with await connected(f"tcp:127.0.0.1:{port}", retries=REMOTE_RETRIES) as client:
        await asyncio.sleep(3.5)  # several probe intervals, idle on our side
        assert await client.echo("alive") == ["alive"]


async def test_connect_to_missing_socket_fails_clearly(shared_ovs: PrivateOvs) -> None:
    with pytest.raises(OvsdbConnectionError, match="cannot connect"):
        await connected(f"unix:{shared_ovs.dir}/nobody.sock")


async def test_ovs_summary_reads_vswitchd_capabilities() -> None:
    with private_ovs(vswitchd=True) as instance:
        deadline = time.monotonic() + 5
        async with await connected(instance.target) as client:
            while not (summary := await ovs_summary(client))["datapath_types"]:
                assert time.monotonic() < deadline, "vswitchd never filled datapath_types"
                await asyncio.sleep(0.05)
        expected = instance.vsctl("get", "Open_vSwitch", ".", "datapath_types")
    assert "netdev" in summary["datapath_types"]
    assert "internal" in summary["iface_types"]
    assert expected.strip() == "[" + ", ".join(summary["datapath_types"]) + "]"


async def test_vswitchd_holds_its_lock_and_reports_the_next_cfg_it_applied() -> None:
    """With a vswitchd, a transaction that increments next_cfg is waited for until cur_cfg
    reaches it (ovs-vsctl agrees); the vswitchd's lock is held the whole time."""
    with private_ovs(vswitchd=True) as instance:
        async with await connected(instance.target) as client:
            assert await vswitchd_connected(client)
            bridge = add_bridge_ops("cfgbr0", datapath_type="netdev")
            *_, selected = await client.transact(VSWITCH_DB, *bridge, *next_cfg_ops())
            wanted = selected["rows"][0]["next_cfg"]
            await wait_for_cur_cfg(client, wanted, timeout=30)
            assert await vswitchd_connected(client)  # asking did not take it away
        assert int(instance.vsctl("get", "Open_vSwitch", ".", "cur_cfg")) >= wanted
        assert instance.vsctl("get", "Bridge", "cfgbr0", "datapath_id")  # vswitchd set it up


async def test_without_vswitchd_nobody_holds_the_lock_and_a_wait_names_what_never_came(
    shared_ovs: PrivateOvs,
) -> None:
    async with await connected(shared_ovs.target) as client:
        assert not await vswitchd_connected(client)
        assert not await vswitchd_connected(client)  # the lock was given back
        *_, selected = await client.transact(VSWITCH_DB, *next_cfg_ops())
        wanted = selected["rows"][0]["next_cfg"]
        with pytest.raises(OvsdbTimeoutError) as caught:
            await wait_for_cur_cfg(client, wanted, timeout=0.3)
    message = str(caught.value)
    assert "ovs-vswitchd has not applied the change" in message
    assert f"cur_cfg is 0, waiting for {wanted}" in message
