"""Who may call which org.opdbus method, and how many costly calls run at once.

The daemon's own gate behind the bus policy (data/dbus/org.opdbus.conf). Methods that change
the host are for root. Methods that parse a caller's document or read the host are costly:
each connection has at most one of them in flight, and all non-root connections together
share one, so no caller, however many connections it opens, keeps the daemon busy. A call
over either bound is refused at once (`org.opdbus.Error.Busy`), never queued.
docs/decisions.md ("What non-root callers may read and do") says why.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from op_dbus.errors import Busy

ROOT_ONLY = frozenset(
    {
        "ApplyState",
        "Apply",
        "TryState",
        "Confirm",
        "ConfirmTry",
        "ConfirmTryWith",
        "Rollback",
        "RollbackWith",
        "Reload",
    }
)
"""Methods that change the host or its pending try."""
COSTLY = frozenset({"ApplyState", "Apply", "TryState", "Diff", "Plan", "Verify", "VerifyState"})
"""Methods that parse a caller's document or read the host (QueryState answers from memory)."""


class CallerSlots:
    """One costly call in flight per connection; one for all non-root connections together."""

    def __init__(self) -> None:
        self._connections: dict[str, str] = {}
        """unique bus name -> the member it is being answered"""
        self._unprivileged: str | None = None
        """the member of the non-root call in flight, if any"""

    @contextmanager
    def connection(self, sender: str, member: str) -> Iterator[None]:
        if (earlier := self._connections.get(sender)) is not None:
            raise Busy(f"{member}: this connection's {earlier} call is still being answered")
        self._connections[sender] = member
        try:
            yield
        finally:
            del self._connections[sender]

    @contextmanager
    def unprivileged(self, member: str) -> Iterator[None]:
        if self._unprivileged is not None:
            raise Busy(
                f"{member}: a non-root caller's {self._unprivileged} call is being answered; "
                "non-root callers take turns, try again after it"
            )
        self._unprivileged = member
        try:
            yield
        finally:
            self._unprivileged = None
