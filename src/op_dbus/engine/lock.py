"""The host-wide apply lock: one writer at a time, whatever process it runs in.

An flock on `apply.lock` in the data dir, taken by every writer (CLI, daemon, and later MCP
and the fleet agent) around plan + apply + verify + record, so two applies never interleave
and a rollback never crosses another apply. The holder writes who it is into the file, so a
writer that waits too long can name it. The kernel drops an flock when its holder dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from op_dbus.errors import Busy

LOCK_NAME = "apply.lock"
DEFAULT_WAIT = 30.0
"""How long a second writer waits for the first before giving up (seconds)."""
POLL = 0.05


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def read_holder(data_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Who holds the lock now (pid, actor, since), or None when nobody does. Read-only."""
    path = Path(data_dir) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if _try_lock(fd):
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        text = os.pread(fd, 4096, 0).decode(errors="replace")
    finally:
        os.close(fd)
    try:
        holder = json.loads(text)
    except ValueError:
        holder = None
    return holder if isinstance(holder, dict) else {"pid": None, "actor": "unknown"}


def describe_holder(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "nobody"
    return (
        f"pid {holder.get('pid')} ({holder.get('actor', 'unknown')}, since {holder.get('since')})"
    )


class ApplyLock:
    """`async with ApplyLock(data_dir).held(actor):` one writer on this host at a time.

    A process takes it once at a time (the Host serialises its own callers first): an flock
    taken twice by one process through two descriptors would block it against itself.
    """

    def __init__(self, data_dir: str | os.PathLike[str], wait: float = DEFAULT_WAIT) -> None:
        self.path = Path(data_dir) / LOCK_NAME
        self.wait = wait

    @contextlib.asynccontextmanager
    async def held(self, actor: str) -> AsyncIterator[None]:
        fd = await self._acquire(actor)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)

    async def _acquire(self, actor: str) -> int:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        deadline = time.monotonic() + self.wait
        while not _try_lock(fd):
            if time.monotonic() >= deadline:
                os.close(fd)
                holder = describe_holder(read_holder(self.path.parent))
                raise Busy(
                    f"another apply holds the host's apply lock ({holder}); "
                    f"waited {self.wait:g} s, nothing was changed"
                )
            await asyncio.sleep(POLL)
        since = time.strftime("%Y-%m-%dT%H:%M:%S")
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "actor": actor, "since": since}).encode(), 0)
        return fd
