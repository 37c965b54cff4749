"""Asyncio OVSDB client (RFC 7047) over unix or tcp sockets: connect, transact, monitor,
reconnect. One reader task owns the socket: it feeds what arrives through the framing
(framing.py) to the protocol (protocol.py), which matches replies to waiting requests and
routes updates to monitors, and sends back the `echo` replies, so a quiet client is never
disconnected.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any

from op_dbus.errors import describe_error
from op_dbus.native.ovsdb.errors import (
    OvsdbConnectionError,
    OvsdbError,
    OvsdbProtocolError,
    OvsdbTimeoutError,
)
from op_dbus.native.ovsdb.framing import JsonStreamDecoder
from op_dbus.native.ovsdb.protocol import (
    Monitor,
    Rpc,
    check_transaction,
    monitor_params,
    result_of,
)

DEFAULT_TCP_PORT = 6640
DEFAULT_TIMEOUT = 10.0
MAX_BACKOFF = 2.0
"""Longest pause between connection attempts."""
_READ_SIZE = 256 * 1024


@dataclass(frozen=True)
class Target:
    """Where the server listens: `unix:PATH` or `tcp:HOST:PORT`, as `ovs-vsctl --db` takes it."""

    kind: str
    path: str = ""
    host: str = ""
    port: int = DEFAULT_TCP_PORT


def parse_target(target: str) -> Target:
    """Parse an `ovs-vsctl --db` style active target; refuse passive and ssl forms clearly."""
    kind, sep, rest = target.partition(":")
    if not sep or not rest:
        raise ValueError(f"OVSDB target {target!r}: expected unix:PATH or tcp:IP:PORT")
    if kind == "unix":
        return Target("unix", path=rest)
    if kind != "tcp":
        raise ValueError(
            f"OVSDB target {target!r}: unsupported method {kind!r} (use unix:PATH or tcp:IP:PORT)"
        )
    if rest.startswith("["):
        host, bracket, port_text = rest[1:].partition("]")
        if not bracket or (port_text and not port_text.startswith(":")):
            raise ValueError(f"OVSDB target {target!r}: malformed IPv6 address")
        port_text = port_text[1:]
    else:
        host, _, port_text = rest.partition(":")
    if not host:
        raise ValueError(f"OVSDB target {target!r}: missing host")
    if not port_text:
        return Target("tcp", host=host)
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"OVSDB target {target!r}: port must be a number in 1..65535")
    return Target("tcp", host=host, port=int(port_text))


class OvsdbClient:
    """One JSON-RPC connection to an ovsdb-server. Use as `async with OvsdbClient() as c:`."""

    def __init__(self, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._rpc = Rpc()
        self._target: str | None = None

    async def connect(self, target: str, *, retries: int = 0, backoff: float = 0.05) -> None:
        """Connect to `target` (`unix:PATH` or `tcp:IP:PORT`).

        A server that is restarting refuses connections for a moment, so up to `retries`
        further attempts follow, the pause doubling from `backoff` up to MAX_BACKOFF.
        """
        where = parse_target(target)
        if self._writer is not None:
            raise OvsdbError("already connected; close() first")
        delay = backoff
        for attempt in range(retries + 1):
            try:
                await self._open(target, where)
                break
            except OvsdbConnectionError:
                if attempt == retries:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)
        self._target = target
        self._rpc = Rpc()
        self._reader_task = asyncio.create_task(self._read_loop(), name=f"ovsdb-reader {target}")

    @property
    def connected(self) -> bool:
        """True while the connection is up (False before connect, after close or a loss)."""
        return self._writer is not None and self._rpc.lost is None

    async def reconnect(self, *, retries: int = 5, backoff: float = 0.05) -> None:
        """Drop the connection (if any) and connect again to the same target, with backoff.

        Monitors do not survive: their iterators end with OvsdbConnectionError, and the
        caller re-creates them (their initial snapshot is the state to resume from).
        """
        if self._target is None:
            raise OvsdbError("reconnect() before connect()")
        await self.close()
        await self.connect(self._target, retries=retries, backoff=backoff)

    async def _open(self, target: str, where: Target) -> None:
        try:
            if where.kind == "unix":
                opening = asyncio.open_unix_connection(where.path)
            else:
                opening = asyncio.open_connection(where.host, where.port)
            async with asyncio.timeout(self.timeout):
                self._reader, self._writer = await opening
        except (OSError, TimeoutError) as exc:
            why = describe_error(exc)
            raise OvsdbConnectionError(f"cannot connect to OVSDB at {target}: {why}") from exc

    async def __aenter__(self) -> OvsdbClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection; requests still waiting fail with OvsdbConnectionError."""
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task
            self._reader_task = None
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
            self._writer = None
        self._rpc.fail(OvsdbConnectionError("connection closed"))

    async def request(self, method: str, params: list[Any], *, timeout: float | None = None) -> Any:
        """Send one JSON-RPC request and return its `result` (OvsdbRpcError on `error`)."""
        if self._writer is None:
            raise OvsdbConnectionError("not connected")
        message, future = self._rpc.request(method, params)
        try:
            async with asyncio.timeout(self.timeout if timeout is None else timeout):
                await self._send(message)
                reply = await future
        except TimeoutError as exc:  # before OSError, of which it is a subclass
            raise OvsdbTimeoutError(f"{method}: no reply within the timeout") from exc
        except OSError as exc:
            raise OvsdbConnectionError(
                f"{method}: OVSDB connection lost: {describe_error(exc)}"
            ) from exc
        finally:
            self._rpc.forget(message)
        return result_of(method, reply)

    async def list_dbs(self) -> list[str]:
        return list(await self.request("list_dbs", []))

    async def get_schema(self, db: str) -> dict[str, Any]:
        return dict(await self.request("get_schema", [db]))

    async def echo(self, *payload: Any) -> list[Any]:
        """Round-trip `payload` through the server (a liveness check)."""
        return list(await self.request("echo", list(payload)))

    async def transact(
        self, db: str, *ops: dict[str, Any], timeout: float | None = None
    ) -> list[dict[str, Any]]:
        """Run `ops` as one atomic transaction; raise OvsdbOpError for the first that failed."""
        results = await self.request("transact", [db, *ops], timeout=timeout)
        return check_transaction(ops, results)

    async def monitor(
        self,
        db: str,
        tables: dict[str, list[str] | None],
        *,
        conditional: bool = True,
        where: dict[str, list[Any]] | None = None,
    ) -> Monitor:
        """Watch `tables` (table -> columns, None for all); `initial` holds the current rows.

        `conditional` uses `monitor_cond` (RFC 7047 extension, `update2` notifications with
        `initial`/`insert`/`delete`/`modify`); otherwise plain `monitor` (`update`, old/new).
        `where` (monitor_cond only) limits a table to rows matching its conditions.
        """
        monitor_id, queue = self._rpc.open_monitor()
        method, params = monitor_params(
            db, monitor_id, tables, conditional=conditional, where=where
        )
        try:
            initial = await self.request(method, params)
        except BaseException:
            self._rpc.close_monitor(monitor_id)
            raise
        return Monitor(monitor_id, dict(initial or {}), queue, self._cancel_monitor)

    async def _cancel_monitor(self, monitor_id: str) -> None:
        if self._rpc.close_monitor(monitor_id) and self.connected:
            await self.request("monitor_cancel", [monitor_id])

    async def _send(self, message: dict[str, Any]) -> None:
        assert self._writer is not None
        self._writer.write(json.dumps(message, separators=(",", ":")).encode())
        await self._writer.drain()

    async def _read_loop(self) -> None:
        assert self._reader is not None
        decoder = JsonStreamDecoder()
        try:
            while data := await self._reader.read(_READ_SIZE):
                try:
                    messages = decoder.feed(data)
                except ValueError as exc:
                    raise OvsdbProtocolError(f"invalid JSON from OVSDB: {exc}") from exc
                for message in messages:
                    if (reply := self._rpc.receive(message)) is not None:
                        await self._send(reply)
            lost = OvsdbConnectionError("OVSDB server closed the connection")
        except OvsdbConnectionError as exc:
            lost = exc
        except Exception as exc:  # anything else must not leave requests waiting forever
            lost = OvsdbConnectionError(f"OVSDB connection lost: {describe_error(exc)}")
        self._rpc.fail(lost)
        if self._writer is not None:
            self._writer.close()


class OvsdbLink:
    """A plugin's one OVSDB connection: opened on first use, made again (with backoff) when
    the server dropped it, so a rollback after ovsdb-server restarted can still read and write."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._client: OvsdbClient | None = None

    async def client(self) -> OvsdbClient:
        if self._client is None:
            client = OvsdbClient()
            await client.connect(self.target, retries=3)
            self._client = client
        elif not self._client.connected:
            await self._client.reconnect(retries=5)
        return self._client

    async def problem(self) -> str | None:
        """Why the server cannot be reached (for `available()`), or None when it answers."""
        try:
            await (await self.client()).echo()
        except OvsdbConnectionError as exc:  # its message names the target
            return describe_error(exc)
        except (OvsdbError, ValueError) as exc:
            return f"OVSDB at {self.target}: {describe_error(exc)}"
        return None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
