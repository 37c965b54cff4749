"""The errors of the OVSDB client, one class per way a request can fail."""

from __future__ import annotations

from typing import Any


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
