"""Listening to a netlink multicast socket from the event loop: what the net and firewall
watchers share. Datagrams are handed over unparsed; a lost event (ENOBUFS) ends the session,
and the watcher's reconnect re-checks the state."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable


async def listen(
    sock: socket.socket, heard: Callable[[list[bytes]], None], connected: Callable[[], None]
) -> None:
    """Hand every burst of datagrams on the bound, non-blocking `sock` to `heard` until
    reading fails (raised); `connected()` once listening. Closes `sock` in the end."""
    loop = asyncio.get_running_loop()
    failed: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        datagrams: list[bytes] = []
        try:
            while data := sock.recv(65536):
                datagrams.append(data)
        except BlockingIOError:
            pass
        except OSError as exc:  # ENOBUFS: events were lost; the reconnect re-checks
            if not failed.done():
                failed.set_exception(exc)
            return
        if datagrams:
            heard(datagrams)

    try:
        loop.add_reader(sock.fileno(), readable)
        try:
            connected()
            await failed
        finally:
            loop.remove_reader(sock.fileno())
    finally:
        sock.close()
