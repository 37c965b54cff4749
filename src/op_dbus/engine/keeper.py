"""The try keeper: the timer of a try made without a daemon, in a process of its own.

`op-dbus apply --confirm-within N` starts `op-dbus try-keeper <id>` detached (its own
session, stdin from /dev/null, output to a log in the data dir, SIGHUP ignored), so the
terminal closing, the SSH session ending or the command being killed does not take the
timer with it. The keeper watches the try's journal file: gone means confirmed (or rolled
back by someone else) and it ends; at the deadline it rolls the try back through a Host,
taking the apply lock and recording it, like any rollback.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from op_dbus.endpoints import Endpoints
from op_dbus.engine.journal import PENDING_DIR, Journal

POLL = 0.2
"""How often the keeper looks for a confirmation (seconds): the rollback comes at most this
late."""


def keeper_log(data_dir: str, apply_id: str) -> Path:
    """Where the keeper of try `apply_id` writes; removed when the try ended cleanly."""
    return Path(data_dir) / PENDING_DIR / f"{apply_id}.keeper.log"


def keeper_alive(data_dir: str, apply_id: str) -> bool:
    """Whether a keeper holds try `apply_id`: it flocks its log for as long as it runs."""
    try:
        fd = os.open(keeper_log(data_dir, apply_id), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def start_keeper(endpoints: Endpoints, apply_id: str, *, use_ledger: bool) -> int:
    """Start the keeper of try `apply_id` detached; return its pid."""
    log_path = keeper_log(endpoints.data_dir, apply_id)
    argv = [
        sys.executable,
        "-m",
        "op_dbus",
        "--data-dir",
        endpoints.data_dir,
        "--ovsdb",
        endpoints.ovsdb,
        "--system-bus",
        endpoints.system_bus,
        "--lxc-path",
        endpoints.lxc_path,
        "--ledger" if use_ledger else "--no-ledger",
        "try-keeper",
        apply_id,
    ]
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    try:
        child = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=fd,
            start_new_session=True,
            close_fds=True,
            cwd="/",
        )
    finally:
        os.close(fd)
    return child.pid


async def keep(endpoints: Endpoints, apply_id: str, *, use_ledger: bool) -> int:
    """Wait for the try's confirmation or deadline; the exit code of what came of it. A
    clean end (kept, or fully rolled back) removes the keeper's log; a failed one keeps it."""
    from op_dbus.exitcodes import ExitCode

    code = await _keep(endpoints, apply_id, use_ledger=use_ledger)
    if code in (ExitCode.OK, ExitCode.ROLLED_BACK):
        keeper_log(endpoints.data_dir, apply_id).unlink(missing_ok=True)
    return code


async def _keep(endpoints: Endpoints, apply_id: str, *, use_ledger: bool) -> int:
    from op_dbus.engine.host import Host
    from op_dbus.exitcodes import ExitCode
    from op_dbus.ledger import store  # noqa: F401  (imported now: the deadline is no time to)

    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    with contextlib.suppress(OSError):  # stdout is the log: held while this keeper lives
        fcntl.flock(sys.stdout.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    journal = Journal(endpoints.data_dir)
    change = journal.get(apply_id)
    host = Host(endpoints, sorted(change.checkpoints) if change else (), use_ledger=use_ledger)
    try:
        while change is not None and change.deadline is not None:
            if change.state == "rollback" or change.expired:
                outcome = await host.rollback_journalled(
                    apply_id,
                    actor=f"{change.actor}:timeout:try-keeper",
                    why=f"not confirmed within {change.window:g} s",
                )
                if outcome is None:
                    break
                print(f"try {apply_id}: {outcome.result.message}", flush=True)
                return int(outcome.result.exit_code)
            await asyncio.sleep(min(POLL, max(0.0, change.deadline - time.time())))
            change = journal.get(apply_id)
    finally:
        await host.close()
    print(f"try {apply_id}: over (confirmed, or rolled back elsewhere)", flush=True)
    return int(ExitCode.OK)
