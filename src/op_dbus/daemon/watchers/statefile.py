"""State file changes: inotify on its directory (editors and config managers replace the file
by renaming a new one over it, so the file itself is not what to watch). libc's inotify via
ctypes: no dependency for three calls. A change asks for the same reload as SIGHUP.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import struct
from collections.abc import Callable
from pathlib import Path

from op_dbus.plugins.base import Session

IN_CLOSE_WRITE, IN_MOVED_TO, IN_CREATE = 0x8, 0x80, 0x100
IN_NONBLOCK, IN_CLOEXEC = os.O_NONBLOCK, os.O_CLOEXEC
_EVENT = struct.Struct("iIII")


def changed_names(data: bytes) -> set[str]:
    """The file names in a buffer of inotify events."""
    names, offset = set(), 0
    while offset + _EVENT.size <= len(data):
        _wd, _mask, _cookie, length = _EVENT.unpack_from(data, offset)
        start = offset + _EVENT.size
        names.add(data[start : start + length].rstrip(b"\0").decode(errors="replace"))
        offset = start + length
    return names


def statefile_session(path: Path, changed: Callable[[], None]) -> Session:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)

    async def session(connected: Callable[[], None]) -> None:
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        loop = asyncio.get_running_loop()
        try:
            mask = IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE
            if libc.inotify_add_watch(fd, os.fsencode(path.parent), mask) < 0:
                raise OSError(ctypes.get_errno(), f"inotify_add_watch {path.parent}")

            def readable() -> None:
                try:
                    names = changed_names(os.read(fd, 65536))
                except BlockingIOError:
                    return
                if path.name in names:
                    changed()

            loop.add_reader(fd, readable)
            connected()
            await asyncio.Event().wait()  # until cancelled
        finally:
            loop.remove_reader(fd)
            os.close(fd)

    return session
