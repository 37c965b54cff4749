"""The session canary: an operator's TCP session to the lab host, from the upstream namespace.

A server in the lab netns echoes every byte; a client in the upstream netns sends one every
INTERVAL s and times each echo. What a test reads: the longest time between two echoes (the
stall the session saw) and whether the connection was reset or closed. Both run as threads of
the calling process, each in its namespace (setns(2) moves only the calling thread), so no
process is started and nothing outlives the context.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from op_dbus.lab.errors import LabError
from op_dbus.lab.netns import NETNS_DIR

INTERVAL = 0.025
"""Seconds between two bytes: a shell session's keystrokes come about as often."""
ECHO_TIMEOUT = 30.0
"""An echo later than this ends the canary as stalled for good (TCP would still retry)."""
_CLONE_NEWNET = 0x40000000


@dataclass
class CanaryStats:
    """What the session saw; filled while it runs, final once the context has left."""

    exchanges: int = 0
    longest_stall: float = 0.0
    """Seconds: the longest time between two echoes (from the connect to the first one too)."""
    reset: str = ""
    """Why the session ended early (reset, closed, timed out); empty: it lived throughout."""
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)


def _enter(netns: str) -> None:
    """Move the calling thread into network namespace `netns`."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(NETNS_DIR / netns, os.O_RDONLY)
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns into {netns}")
    finally:
        os.close(fd)


def _serve(listener: socket.socket, stop: threading.Event) -> None:
    listener.settimeout(ECHO_TIMEOUT)
    with contextlib.suppress(OSError):
        peer, _ = listener.accept()
        with peer:
            peer.settimeout(0.5)
            while not stop.is_set():
                try:
                    data = peer.recv(64)
                except TimeoutError:
                    continue
                if not data:
                    return
                peer.sendall(data)


def _client(sock: socket.socket, stats: CanaryStats) -> None:
    sock.settimeout(ECHO_TIMEOUT)
    last = time.monotonic()
    try:
        while not stats._stop.wait(INTERVAL):
            sock.sendall(b".")
            if not sock.recv(1):
                stats.reset = "the lab host closed the connection"
                return
            now = time.monotonic()
            stats.longest_stall = max(stats.longest_stall, now - last)
            stats.exchanges += 1
            last = now
    except TimeoutError:
        stats.reset = f"no echo within {ECHO_TIMEOUT:.0f} s"
    except OSError as exc:
        stats.reset = f"connection lost: {exc.strerror or exc}"
    finally:
        stats.longest_stall = max(stats.longest_stall, time.monotonic() - last)


def _in_netns(netns: str, job: Callable[..., None], *args: object) -> threading.Thread:
    def run() -> None:
        _enter(netns)
        job(*args)

    thread = threading.Thread(target=run, name=f"canary-{netns}", daemon=True)
    thread.start()
    return thread


@contextlib.contextmanager
def canary(lab_netns: str, upstream_netns: str, host: str) -> Iterator[CanaryStats]:
    """A live session from `upstream_netns` to `host` in `lab_netns` for the `with` block."""
    ready: dict[str, socket.socket | BaseException] = {}

    def listen() -> None:
        try:
            listener = socket.create_server(("0.0.0.0", 0))
            ready["listener"] = listener
        except OSError as exc:
            ready["error"] = exc

    def connect(port: int) -> None:
        try:
            ready["client"] = socket.create_connection((host, port), timeout=5.0)
        except OSError as exc:
            ready["error"] = exc

    _in_netns(lab_netns, listen).join()
    if "error" in ready:
        raise LabError(f"canary: cannot listen in {lab_netns}: {ready['error']}")
    listener = ready["listener"]
    assert isinstance(listener, socket.socket)
    stats = CanaryStats()
    server = _in_netns(lab_netns, _serve, listener, stats._stop)
    _in_netns(upstream_netns, connect, listener.getsockname()[1]).join()
    if "error" in ready:
        stats._stop.set()
        listener.close()
        raise LabError(f"canary: cannot reach {host} from {upstream_netns}: {ready['error']}")
    client_sock = ready["client"]
    assert isinstance(client_sock, socket.socket)
    client = threading.Thread(target=_client, args=(client_sock, stats), daemon=True)
    client.start()
    try:
        yield stats
    finally:
        stats._stop.set()
        client.join(ECHO_TIMEOUT + 1)
        client_sock.close()
        server.join(2.0)
        listener.close()
