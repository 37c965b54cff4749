"""SIGINT, SIGTERM and SIGHUP during an apply: the first rolls it back, the second stops that.

The apply finishes the batch in flight (a plugin's batch is its unit of change: one OVSDB
transaction for net), then rolls back to the checkpoint instead of going on. A second signal
during that rollback stops it after its batch in flight; the final re-read then says exactly
what is left. Only a process that owns its signals (the CLI) installs these; the daemon has
its own meaning for SIGTERM and SIGHUP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator

log = logging.getLogger("op_dbus.engine")

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupts:
    """What arrived so far: `first` (the signal's name) asks for a rollback, `stop` for
    stopping it."""

    def __init__(self) -> None:
        self.first: str | None = None
        self.stop = False

    def hit(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self.first is None:
            self.first = name
            log.warning("%s: finishing the action in flight, then rolling back", name)
        else:
            self.stop = True
            log.warning("%s again: stopping the rollback after its action in flight", name)

    @contextlib.contextmanager
    def catching(self) -> Iterator[Interrupts]:
        """Route the signals here for the block (in the loop's thread), then restore them."""
        loop = asyncio.get_running_loop()
        previous = {s: signal.getsignal(s) for s in SIGNALS}
        for s in SIGNALS:
            loop.add_signal_handler(s, self.hit, s)
        try:
            yield self
        finally:
            for s in SIGNALS:
                loop.remove_signal_handler(s)
                signal.signal(s, previous[s])
