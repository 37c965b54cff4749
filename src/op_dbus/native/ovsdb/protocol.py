"""OVSDB's JSON-RPC (RFC 7047) without a socket: requests matched to their replies by id, the
server's `echo` answered, monitor updates routed to their monitor, and the replies checked.

The client feeds in every message the server sent (`Rpc.receive`) and sends whatever it gives
back, so all of this is tested with plain messages.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

from op_dbus.native.ovsdb.errors import (
    OvsdbConnectionError,
    OvsdbOpError,
    OvsdbProtocolError,
    OvsdbRpcError,
    OvsdbTimeoutError,
)

UPDATE_METHODS = ("update", "update2")
"""The notifications of `monitor` and `monitor_cond`."""


class Rpc:
    """The JSON-RPC state of one connection: requests waiting for replies, open monitors."""

    def __init__(self) -> None:
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._monitors: dict[str, asyncio.Queue[Any]] = {}
        self._ids = itertools.count(1)
        self.lost: OvsdbConnectionError | None = None
        """Why the connection is gone; every request then fails with it."""

    def request(self, method: str, params: list[Any]) -> tuple[dict[str, Any], asyncio.Future]:
        """A request to send, and the future its reply message resolves."""
        if self.lost is not None:
            raise self.lost
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        return {"method": method, "params": params, "id": request_id}, future

    def forget(self, request: dict[str, Any]) -> None:
        """The request is no longer waited for (answered, timed out or failed)."""
        self._pending.pop(request["id"], None)

    def receive(self, message: Any) -> dict[str, Any] | None:
        """Handle one message from the server; return the reply to send back, if any."""
        if not isinstance(message, dict):
            raise OvsdbProtocolError(f"unexpected JSON-RPC message {message!r:.200}")
        if "result" in message or "error" in message:
            future = self._pending.get(message.get("id"))  # type: ignore[arg-type]
            if future is not None and not future.done():
                future.set_result(message)
        elif message.get("method") == "echo":
            return {"result": message.get("params", []), "error": None, "id": message.get("id")}
        elif message.get("method") in UPDATE_METHODS:
            params = message.get("params") or [None, {}]
            queue = self._monitors.get(params[0])
            if queue is not None:
                queue.put_nowait(params[1])
        return None

    def open_monitor(self) -> tuple[str, asyncio.Queue[Any]]:
        """A new monitor id and the queue its updates go to (open before the request is
        sent: updates may follow its reply at once)."""
        monitor_id = f"m{next(self._ids)}"
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._monitors[monitor_id] = queue
        return monitor_id, queue

    def close_monitor(self, monitor_id: str) -> bool:
        """End the monitor's iteration; True when it was open."""
        queue = self._monitors.pop(monitor_id, None)
        if queue is None:
            return False
        queue.put_nowait(None)
        return True

    def fail(self, error: OvsdbConnectionError) -> None:
        """The connection is gone: every waiting request and open monitor fails with `error`."""
        self.lost = error
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._pending.clear()
        for queue in self._monitors.values():
            queue.put_nowait(error)
        self._monitors.clear()


def result_of(method: str, reply: dict[str, Any]) -> Any:
    """The `result` of a reply message; OvsdbRpcError when the request was refused."""
    if reply.get("error") is not None:
        raise OvsdbRpcError(method, reply["error"])
    return reply.get("result")


def check_transaction(ops: tuple[dict[str, Any], ...], results: list[Any]) -> list[Any]:
    """The results of a `transact`; OvsdbOpError for the first operation that failed (an
    error past the last operation is the commit's own)."""
    for index, result in enumerate(results):
        if isinstance(result, dict) and "error" in result:
            op = ops[index] if index < len(ops) else None
            raise OvsdbOpError(index, op, result["error"], result.get("details"))
    return list(results)


def monitor_params(
    db: str,
    monitor_id: str,
    tables: dict[str, list[str] | None],
    *,
    conditional: bool,
    where: dict[str, list[Any]] | None,
) -> tuple[str, list[Any]]:
    """The method and params of a `monitor` or `monitor_cond` request for `tables`."""
    requests: dict[str, Any] = {}
    for table, columns in tables.items():
        request: dict[str, Any] = {} if columns is None else {"columns": list(columns)}
        if conditional and where and table in where:
            request["where"] = where[table]
        requests[table] = [request] if conditional else request
    return ("monitor_cond" if conditional else "monitor"), [db, monitor_id, requests]


class Monitor:
    """One monitor's notifications: `async for updates in monitor` yields table-updates.

    Each item maps table -> row uuid -> change, exactly as the server sent it. Iteration ends
    after `cancel()`; a lost connection raises OvsdbConnectionError from the iterator.
    """

    def __init__(
        self,
        monitor_id: str,
        initial: dict[str, Any],
        queue: asyncio.Queue[Any],
        cancel: Callable[[str], Awaitable[None]],
    ) -> None:
        self.id = monitor_id
        self.initial = initial
        self._queue = queue
        self._cancel = cancel
        self._done = False

    def __aiter__(self) -> Monitor:
        return self

    async def __anext__(self) -> dict[str, Any]:
        if self._done:
            raise StopAsyncIteration
        item = await self._queue.get()
        if item is None:
            self._done = True
            raise StopAsyncIteration
        if isinstance(item, OvsdbConnectionError):
            self._done = True
            raise item
        return dict(item)

    async def next(self, timeout: float) -> dict[str, Any]:
        """The next update, or OvsdbTimeoutError after `timeout` seconds."""
        try:
            async with asyncio.timeout(timeout):
                return await self.__anext__()
        except TimeoutError as exc:
            raise OvsdbTimeoutError(f"monitor {self.id}: no update within {timeout} s") from exc

    async def cancel(self) -> None:
        """Stop the monitor on the server; iteration ends."""
        await self._cancel(self.id)
