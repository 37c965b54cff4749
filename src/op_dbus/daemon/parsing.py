"""Callers' state documents are parsed and validated in a child process.

Parsing YAML is pure Python. In a worker thread of the daemon it takes turns with the event
loop for the GIL: a flood of valid near-limit YAML documents from a non-root caller stretched
root's QueryState to seconds (measured in the lab). In a process of its own the parse costs
the loop nothing; the document (bounded to 1 MiB at the door) goes over a pipe, and only plain
data comes back. The child starts at the first document and is replaced if it dies.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from op_dbus.model import Mode, StateInputError, parse_state
from op_dbus.plugins.base import Section


@dataclass(frozen=True)
class ParsedState:
    """What the daemon needs of a valid document: its sections and the mode they run in."""

    sections: dict[str, Section]
    mode: str


class InvalidDocument(Exception):
    """The document is not a valid state (the message names every error path)."""


def parse_document(text: str, mode: Mode | None) -> ParsedState | list[str]:
    """In the child: the parsed state, or the error lines (plain data both ways)."""
    try:
        loaded = parse_state(text, mode=mode, origin="<D-Bus>")
    except StateInputError as err:
        return [str(e) for e in err.errors]
    return ParsedState(loaded.state.sections(), str(loaded.mode))


class DocumentParser:
    """A pool of up to `workers` child processes (root's call need not wait for a non-root's)."""

    def __init__(self, workers: int = 2) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    async def parse(self, text: str, mode: Mode | None) -> ParsedState:
        if self._pool is None:
            context = multiprocessing.get_context("spawn")  # no inherited threads or loop
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=context)
        try:
            out = await asyncio.get_running_loop().run_in_executor(
                self._pool, parse_document, text, mode
            )
        except BrokenProcessPool:  # the child died (killed, out of memory): a fresh one next
            self._pool = None
            raise
        if isinstance(out, list):
            raise InvalidDocument("; ".join(out))
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
