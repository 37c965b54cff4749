"""sd_notify without libsystemd: a few `KEY=VALUE` lines in one datagram to `NOTIFY_SOCKET`.

systemd (Type=notify) waits for READY=1 before it calls the service started, shows STATUS=
in `systemctl status`, and with WatchdogSec= restarts a daemon that stops sending WATCHDOG=1.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


class Notifier:
    """Messages to the service manager; silently nothing when not started by one."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        # "@name" is an abstract socket: a leading NUL byte on the wire.
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_usec = _watchdog_usec(env)

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between WATCHDOG=1 pings (half the timeout, as sd_watchdog_enabled advises)."""
        return None if self.watchdog_usec is None else self.watchdog_usec / 2_000_000

    def send(self, *lines: str) -> bool:
        """Send `lines` as one datagram; False when there is no manager, it is gone, or its
        queue is full (never block: a stuck reader must not stop the daemon)."""
        if not self.address:
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            try:
                sock.sendto("\n".join(lines).encode(), socket.MSG_DONTWAIT, self.address)
            except OSError:
                return False
        return True

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def status(self, status: str) -> bool:
        return self.send(f"STATUS={status}")

    def reloading(self, status: str) -> bool:
        return self.send("RELOADING=1", f"STATUS={status}")

    def stopping(self, status: str) -> bool:
        return self.send("STOPPING=1", f"STATUS={status}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")


def _watchdog_usec(env: Mapping[str, str]) -> int | None:
    """WATCHDOG_USEC when it is meant for this process (WATCHDOG_PID unset or ours)."""
    usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None
    return int(usec)
