"""Asyncio OVSDB client (RFC 7047) over unix or tcp sockets.

Our own client rather than the PyPI `ovs` IDL: the standard library's `json` (C) parses OVSDB
replies 23x faster than `ovs`'s pure-Python parser on this machine kind (architecture.md).
One reader task owns the socket: it dispatches replies to waiting requests by id and answers
the server's `echo` keepalives, so a quiet client is never disconnected.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import gc
import itertools
import json
import re
from dataclasses import dataclass
from typing import Any

DEFAULT_TCP_PORT = 6640
DEFAULT_TIMEOUT = 10.0
MAX_BACKOFF = 2.0
"""Longest pause between connection attempts."""
VSWITCH_DB = "Open_vSwitch"
"""The database ovs-vswitchd is configured from (also the name of its root table)."""
_READ_SIZE = 256 * 1024
_UPDATE_METHODS = ("update", "update2")  # notifications of `monitor` and `monitor_cond`


class OvsdbError(Exception):
    """Base of every error this client raises."""


class OvsdbConnectionError(OvsdbError):
    """The connection could not be made, or was lost (pending requests fail with this)."""


class OvsdbTimeoutError(OvsdbError, TimeoutError):
    """The server did not answer a request within its timeout."""


class OvsdbProtocolError(OvsdbConnectionError):
    """The server sent something that is not JSON-RPC; the connection is dropped."""


class OvsdbRpcError(OvsdbError):
    """A request as a whole was refused (JSON-RPC `error`, e.g. an unknown database)."""

    def __init__(self, method: str, error: Any) -> None:
        if isinstance(error, dict) and "error" in error:
            text = (
                f"{error['error']}: {error['details']}" if error.get("details") else error["error"]
            )
        else:
            text = str(error)
        super().__init__(f"{method} failed: {text}")
        self.method = method
        self.error = error


class OvsdbOpError(OvsdbError):
    """An operation of a transaction failed; nothing of the transaction was committed.

    `index` is the operation's position in the transaction; when it equals the number of
    operations, the commit itself failed (e.g. referential integrity) and `op` is None.
    """

    def __init__(self, index: int, op: dict[str, Any] | None, error: str, details: Any) -> None:
        if op is None:
            what = "commit"
        else:
            table = op.get("table")
            what = f"operation {index} ({op.get('op')}{f' on {table}' if table else ''})"
        suffix = f": {details}" if details else ""
        super().__init__(f"{what} failed: {error}{suffix}")
        self.index = index
        self.op = op
        self.error = error
        self.details = details


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


# A JSON string (possibly with escapes), or a lone quote when the string is not complete yet,
# or one bracket. Everything else between them is irrelevant for finding where a value ends.
_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|"|[{}\[\]]')
# Where one top-level value ends and the next begins: JSON allows a closing bracket followed
# by an opening one nowhere else, except inside strings (a false hit costs one extra attempt).
_BOUNDARY = re.compile(r"[}\]]\s*[{\[]")
# Past this size an unfinished value is tried anyway (then at every doubling), so a server
# sending endless garbage that never ends in a bracket is caught without quadratic retries.
_BLIND_TRY_SIZE = 1 << 20


class JsonStreamDecoder:
    """Split a byte stream of concatenated JSON objects (no delimiter) into decoded values.

    OVSDB frames nothing: a message ends where its top-level object closes. Scanning for that
    end in Python costs ~25 ms for a 500 kB reply, ten times what the C `json` decoder needs to
    parse it, so the decoder itself is the scanner. It is tried only when a value may have just
    closed: the text ends in a closing bracket, or the new bytes hold one followed by an opening
    bracket (JSON allows that pair only between values). A failed try is told apart from bad
    JSON by where the parse stopped.
    """

    def __init__(self) -> None:
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self._pieces: list[str] = []  # the unconsumed text, joined only for a try
        self._size = 0
        self._last = ""  # the last non-whitespace character received
        self._tried_at = 0  # text size at the last try that found the value unfinished
        self._json = json.JSONDecoder()

    def feed(self, data: bytes) -> list[Any]:
        """Add bytes; return every value completed by them (raises ValueError on bad JSON)."""
        text = self._utf8.decode(data)
        tail = text.rstrip()
        if not tail:  # whitespace closes nothing; between values it is not even kept
            if self._pieces:
                self._pieces.append(text)
                self._size += len(text)
            return []
        if not self._pieces:
            self._check_start(text.lstrip())
        may_have_closed = tail[-1] in "}]" or _BOUNDARY.search(self._last + text) is not None
        self._last = tail[-1]
        self._pieces.append(text)
        self._size += len(text)
        if not (may_have_closed or self._blind_try_due()):
            return []
        buf = "".join(self._pieces).lstrip()
        values: list[Any] = []
        while buf:
            self._check_start(buf)
            value, end = self._try_decode(buf)
            if end is None:
                break
            values.append(value)
            buf = buf[end:].lstrip()
        self._pieces, self._size = ([buf], len(buf)) if buf else ([], 0)
        self._tried_at = len(buf) if buf else 0
        return values

    def _blind_try_due(self) -> bool:
        return self._size >= max(2 * self._tried_at, _BLIND_TRY_SIZE)

    @staticmethod
    def _check_start(buf: str) -> None:
        if buf and buf[0] not in "{[":
            raise ValueError(f"expected a JSON object, got {buf[:20]!r}")

    def _try_decode(self, buf: str) -> tuple[Any, int | None]:
        """The first value and where it ends, or (None, None) while it is unfinished."""
        collecting = gc.isenabled()
        gc.disable()  # a big reply is ~100k new containers, none cyclic: the collector's walks
        try:  # over them would double the parse time
            return self._json.raw_decode(buf)
        except json.JSONDecodeError as exc:
            if exc.pos >= len(buf) or exc.msg.startswith("Unterminated string"):
                return None, None
            if _first_value_closes(buf):
                raise  # JSONDecodeError is a ValueError
            return None, None  # a number, literal or \\u escape cut short
        finally:
            if collecting:
                gc.enable()


def _first_value_closes(buf: str) -> bool:
    """Whether the brackets of the value at the start of `buf` balance (strings skipped)."""
    depth = 0
    for match in _TOKEN.finditer(buf):
        token = match.group()
        if token == '"':  # a string that has not fully arrived yet
            return False
        if token in "{[":
            depth += 1
        elif token in "}]":
            depth -= 1
            if depth == 0:
                return True
    return False


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


class OvsdbClient:
    """One JSON-RPC connection to an ovsdb-server. Use as `async with OvsdbClient() as c:`."""

    def __init__(self, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.timeout = timeout
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._lost: OvsdbConnectionError | None = None
        self._monitors: dict[str, asyncio.Queue[Any]] = {}
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
        self._lost = None
        self._reader_task = asyncio.create_task(self._read_loop(), name=f"ovsdb-reader {target}")

    @property
    def connected(self) -> bool:
        """True while the connection is up (False before connect, after close or a loss)."""
        return self._writer is not None and self._lost is None

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
            why = "timed out" if isinstance(exc, TimeoutError) else str(exc) or repr(exc)
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
        self._fail_pending(OvsdbConnectionError("connection closed"))

    async def request(self, method: str, params: list[Any], *, timeout: float | None = None) -> Any:
        """Send one JSON-RPC request and return its `result` (OvsdbRpcError on `error`)."""
        if self._writer is None or self._lost is not None:
            raise self._lost or OvsdbConnectionError("not connected")
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            async with asyncio.timeout(self.timeout if timeout is None else timeout):
                await self._send({"method": method, "params": params, "id": request_id})
                reply = await future
        except TimeoutError as exc:  # before OSError, of which it is a subclass
            raise OvsdbTimeoutError(f"{method}: no reply within the timeout") from exc
        except OSError as exc:
            raise OvsdbConnectionError(f"{method}: OVSDB connection lost: {exc!r}") from exc
        finally:
            self._pending.pop(request_id, None)
        if reply.get("error") is not None:
            raise OvsdbRpcError(method, reply["error"])
        return reply.get("result")

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
        for index, result in enumerate(results):
            if isinstance(result, dict) and "error" in result:
                op = ops[index] if index < len(ops) else None
                raise OvsdbOpError(index, op, result["error"], result.get("details"))
        return list(results)

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
        monitor_id = f"m{next(self._ids)}"
        requests: dict[str, Any] = {}
        for table, columns in tables.items():
            request: dict[str, Any] = {} if columns is None else {"columns": list(columns)}
            if conditional and where and table in where:
                request["where"] = where[table]
            requests[table] = [request] if conditional else request
        queue: asyncio.Queue[Any] = asyncio.Queue()
        self._monitors[monitor_id] = queue  # before the request: updates may follow at once
        method = "monitor_cond" if conditional else "monitor"
        try:
            initial = await self.request(method, [db, monitor_id, requests])
        except BaseException:
            self._monitors.pop(monitor_id, None)
            raise
        return Monitor(self, monitor_id, dict(initial or {}), queue)

    async def _cancel_monitor(self, monitor_id: str) -> None:
        queue = self._monitors.pop(monitor_id, None)
        if queue is not None:
            queue.put_nowait(None)
            if self._lost is None and self._writer is not None:
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
                    await self._dispatch(message)
            lost = OvsdbConnectionError("OVSDB server closed the connection")
        except OvsdbConnectionError as exc:
            lost = exc
        except Exception as exc:  # anything else must not leave requests waiting forever
            lost = OvsdbConnectionError(f"OVSDB connection lost: {exc!r}")
        self._fail_pending(lost)
        if self._writer is not None:
            self._writer.close()

    async def _dispatch(self, message: Any) -> None:
        if not isinstance(message, dict):
            raise OvsdbProtocolError(f"unexpected JSON-RPC message {message!r:.200}")
        if "result" in message or "error" in message:
            future = self._pending.get(message.get("id"))  # type: ignore[arg-type]
            if future is not None and not future.done():
                future.set_result(message)
        elif message.get("method") == "echo":
            reply = {"result": message.get("params", []), "error": None, "id": message.get("id")}
            await self._send(reply)
        elif message.get("method") in _UPDATE_METHODS:
            params = message.get("params") or [None, {}]
            queue = self._monitors.get(params[0])
            if queue is not None:
                queue.put_nowait(params[1])

    def _fail_pending(self, error: OvsdbConnectionError) -> None:
        self._lost = error
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._pending.clear()
        for queue in self._monitors.values():
            queue.put_nowait(error)
        self._monitors.clear()


class Monitor:
    """One monitor's notifications: `async for updates in monitor` yields table-updates.

    Each item maps table -> row uuid -> change, exactly as the server sent it. Iteration ends
    after `cancel()`; a lost connection raises OvsdbConnectionError from the iterator.
    """

    def __init__(
        self, client: OvsdbClient, monitor_id: str, initial: dict[str, Any], queue: asyncio.Queue
    ) -> None:
        self.client = client
        self.id = monitor_id
        self.initial = initial
        self._queue = queue
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
        await self.client._cancel_monitor(self.id)


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
        except (OvsdbError, ValueError) as exc:
            return f"OVSDB at {self.target}: {exc}"
        return None

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
