"""Processes the lab started, identified by PID and start time (or, from a pidfile, by name)
so a recycled PID is never hit."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def start_time(pid: int) -> int | None:
    """The kernel's start time of `pid` (clock ticks since boot), None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat.rpartition(")")[2].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def alive(pid: int | None, started: int | None = None) -> bool:
    """True if `pid` runs and, when `started` is given, is still the same process."""
    if not pid:
        return False
    now = start_time(pid)
    return now is not None and (started is None or now == started)


def wait_gone(pid: int, started: int | None, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while alive(pid, started):
        if time.monotonic() > deadline:
            return False
        _reap(pid)
        time.sleep(0.02)
    return True


def terminate(pid: int | None, started: int | None = None, timeout: float = 10.0) -> None:
    """SIGTERM, wait up to `timeout`, then SIGKILL: the only way the lab stops a process."""
    if not pid or not alive(pid, started):
        return
    _signal(pid, signal.SIGTERM)
    if not wait_gone(pid, started, timeout):
        _signal(pid, signal.SIGKILL)
        wait_gone(pid, started, 5.0)


def terminate_all(pids: set[int], timeout: float = 2.0) -> None:
    """SIGTERM all at once, then SIGKILL whatever is left once `timeout` (shared) has passed."""
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for pid in pids:
        if not wait_gone(pid, None, max(0.0, deadline - time.monotonic())):
            _signal(pid, signal.SIGKILL)
    for pid in pids:
        wait_gone(pid, None, 5.0)


def read_pidfile(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None


def pidfile_process(path: Path, command: str) -> int | None:
    """The PID in pidfile `path` if it is a live process named `command`, else None.

    A daemon that died leaves its pidfile behind, and the kernel may give that PID to another
    process: checking the name keeps the lab from signalling a stranger.
    """
    pid = read_pidfile(path)
    if pid is None or not alive(pid):
        return None
    try:
        name = Path(f"/proc/{pid}/comm").read_text().strip()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return pid if name == command else None


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _reap(pid: int) -> None:
    """Collect `pid` if it is our own child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
