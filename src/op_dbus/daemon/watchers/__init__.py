"""Event sources that tell the daemon which sections to look at again (never what changed:
the reconciler re-reads and diffs, so a missed or duplicated event costs a read, not a bug).

Each watcher is a `Session`: it connects, reports `connected()`, and returns or raises when
its connection is lost; `supervise` runs it again with backoff. A (re)connection triggers a
fresh diff, since anything may have happened while nobody was listening.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from op_dbus.errors import describe_error
from op_dbus.plugins.base import Session

log = logging.getLogger("op_dbus.daemon")


async def supervise(
    what: str,
    session: Session,
    on_connect: Callable[[], None],
    *,
    min_delay: float = 0.1,
    max_delay: float = 5.0,
) -> None:
    """Run `session` until cancelled, reconnecting with exponential backoff."""
    delay = min_delay
    up = False

    def connected() -> None:
        nonlocal delay, up
        delay, up = min_delay, True
        log.info("%s: watching", what)
        on_connect()

    while True:
        try:
            await session(connected)
            reason = "connection closed"
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            reason = describe_error(exc)
        if up:
            log.warning("%s: lost (%s); reconnecting", what, reason)
        else:
            log.debug("%s: cannot connect (%s); retrying in %.1f s", what, reason, delay)
        up = False
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_delay)
