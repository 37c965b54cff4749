"""OVSDB JSON-RPC without a socket: replies matched to requests, echo, monitor updates."""

from __future__ import annotations

import asyncio

import pytest

from op_dbus.native.ovsdb import (
    OvsdbConnectionError,
    OvsdbOpError,
    OvsdbProtocolError,
    OvsdbRpcError,
)
from op_dbus.native.ovsdb.protocol import (
    Monitor,
    Rpc,
    check_transaction,
    monitor_params,
    result_of,
)


async def test_replies_resolve_their_own_request_whatever_the_order() -> None:
    rpc = Rpc()
    first, first_reply = rpc.request("list_dbs", [])
    second, second_reply = rpc.request("echo", ["x"])
    assert first["id"] != second["id"]
    assert rpc.receive({"id": second["id"], "result": ["x"], "error": None}) is None
    assert second_reply.done() and not first_reply.done()
    rpc.receive({"id": first["id"], "result": ["Open_vSwitch"], "error": None})
    assert result_of("list_dbs", first_reply.result()) == ["Open_vSwitch"]
    assert result_of("echo", second_reply.result()) == ["x"]


async def test_unknown_duplicate_and_forgotten_replies_are_ignored() -> None:
    rpc = Rpc()
    request, reply = rpc.request("list_dbs", [])
    rpc.receive({"id": 999, "result": [], "error": None})
    assert not reply.done()
    rpc.receive({"id": request["id"], "result": ["a"], "error": None})
    rpc.receive({"id": request["id"], "result": ["b"], "error": None})
    assert reply.result()["result"] == ["a"]
    late, late_reply = rpc.request("echo", [])
    rpc.forget(late)  # timed out: its reply, when it comes, resolves nothing
    rpc.receive({"id": late["id"], "result": [], "error": None})
    assert not late_reply.done()


async def test_an_echo_from_the_server_gets_its_params_back() -> None:
    reply = Rpc().receive({"method": "echo", "params": ["ping"], "id": "echo"})
    assert reply == {"result": ["ping"], "error": None, "id": "echo"}


async def test_a_message_that_is_no_object_is_a_protocol_error() -> None:
    with pytest.raises(OvsdbProtocolError):
        Rpc().receive(["not", "an", "object"])


def test_an_error_reply_raises_naming_the_method() -> None:
    with pytest.raises(OvsdbRpcError, match="get_schema failed: unknown database: nope"):
        result_of(
            "get_schema",
            {"result": None, "error": {"error": "unknown database", "details": "nope"}, "id": 1},
        )


def test_a_failed_operation_is_named_and_a_failed_commit_too() -> None:
    ops = ({"op": "insert", "table": "Bridge"}, {"op": "wait", "table": "Port"})
    with pytest.raises(
        OvsdbOpError, match=r"operation 1 \(wait on Port\) failed: timed out"
    ) as err:
        check_transaction(ops, [{"uuid": ["uuid", "u"]}, {"error": "timed out"}])
    assert err.value.index == 1 and err.value.op == ops[1]
    with pytest.raises(OvsdbOpError, match="commit failed: referential integrity violation"):
        check_transaction(ops, [{}, {}, {"error": "referential integrity violation"}])
    assert check_transaction(ops, [{"uuid": ["uuid", "u"]}, {}]) == [{"uuid": ["uuid", "u"]}, {}]


async def test_updates_reach_their_monitor_only_and_cancel_ends_it() -> None:
    rpc = Rpc()
    cancelled: list[str] = []

    async def cancel(monitor_id: str) -> None:
        cancelled.append(monitor_id)
        rpc.close_monitor(monitor_id)

    first_id, first_queue = rpc.open_monitor()
    other_id, _ = rpc.open_monitor()
    assert first_id != other_id
    monitor = Monitor(first_id, {"Bridge": {}}, first_queue, cancel)
    change = {"Bridge": {"u1": {"insert": {"name": "br0"}}}}
    rpc.receive({"method": "update2", "params": [first_id, change], "id": None})
    rpc.receive({"method": "update2", "params": [other_id, {"Port": {}}], "id": None})
    rpc.receive({"method": "update", "params": ["gone", {"Port": {}}], "id": None})
    assert await monitor.next(timeout=1) == change
    await monitor.cancel()
    assert cancelled == [first_id]
    assert [u async for u in monitor] == []
    assert not rpc.close_monitor(first_id), "already closed"


async def test_a_lost_connection_fails_requests_and_monitors_and_later_requests() -> None:
    rpc = Rpc()
    _, reply = rpc.request("transact", [])
    monitor_id, queue = rpc.open_monitor()
    monitor = Monitor(monitor_id, {}, queue, lambda _: asyncio.sleep(0))
    rpc.fail(OvsdbConnectionError("OVSDB server closed the connection"))
    with pytest.raises(OvsdbConnectionError, match="closed the connection"):
        await reply
    with pytest.raises(OvsdbConnectionError, match="closed the connection"):
        await monitor.next(timeout=1)
    with pytest.raises(OvsdbConnectionError, match="closed the connection"):
        rpc.request("echo", [])


def test_monitor_params_for_both_kinds_of_monitor() -> None:
    tables = {"Bridge": ["name"], "Port": None}
    where = {"Bridge": [["name", "==", "br0"]]}
    method, params = monitor_params("db", "m1", tables, conditional=True, where=where)
    assert method == "monitor_cond"
    assert params == [
        "db",
        "m1",
        {"Bridge": [{"columns": ["name"], "where": [["name", "==", "br0"]]}], "Port": [{}]},
    ]
    method, params = monitor_params("db", "m2", tables, conditional=False, where=where)
    assert (method, params) == (
        "monitor",
        ["db", "m2", {"Bridge": {"columns": ["name"]}, "Port": {}}],
    )
