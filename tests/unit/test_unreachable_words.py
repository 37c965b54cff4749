"""Why a backend cannot be reached reads in plain words: no `[Errno 111]`, no exception
class names, whether the OVSDB socket or the system bus is missing or refuses. The
endpoints are real sockets that are not there or not listening (no root needed)."""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from op_dbus.endpoints import Endpoints
from op_dbus.errors import describe_error
from op_dbus.plugins import make_plugin

CLASS_NAME = re.compile(r"\b[A-Z][A-Za-z]*(Error|Exception|Refused)\b")


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A local TCP port nothing listens on (bound, then released: connects are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    yield port


def plain(reason: str) -> None:
    assert reason
    assert "Errno" not in reason, reason
    assert not CLASS_NAME.search(reason), reason


async def reason_of(name: str, endpoints: Endpoints) -> str:
    plugin = make_plugin(name, endpoints)
    try:
        availability = await plugin.available()
    finally:
        await plugin.close()
    assert not availability.ok
    return availability.reason


async def test_a_missing_ovsdb_socket_reads_plainly(tmp_path: Path) -> None:
    reason = await reason_of("net", Endpoints(ovsdb=f"unix:{tmp_path}/db.sock"))
    plain(reason)
    assert f"OVSDB at unix:{tmp_path}/db.sock" in reason and "No such file" in reason
    assert reason.count("OVSDB at") == 1, "the target is named once"


async def test_an_ovsdb_port_that_refuses_reads_plainly(closed_port: int) -> None:
    reason = await reason_of("net", Endpoints(ovsdb=f"tcp:127.0.0.1:{closed_port}"))
    plain(reason)
    assert f"tcp:127.0.0.1:{closed_port}" in reason


async def test_a_missing_system_bus_reads_plainly(tmp_path: Path) -> None:
    reason = await reason_of("systemd", Endpoints(system_bus=f"unix:path={tmp_path}/bus"))
    plain(reason)
    assert "No such file" in reason


async def test_a_system_bus_that_refuses_reads_plainly(closed_port: int) -> None:
    bus = f"tcp:host=127.0.0.1,port={closed_port}"
    plain(await reason_of("systemd", Endpoints(system_bus=bus)))


def test_an_errno_quoted_inside_another_message_goes_too() -> None:
    several = OSError("Multiple exceptions: [Errno 111] Connect call failed ('::1', 6640)")
    assert describe_error(several) == "Multiple exceptions: Connect call failed ('::1', 6640)"
    plain(describe_error(ConnectionRefusedError(111, "Connection refused")))
