"""The daemon's pure parts: sd_notify datagrams, the lock, backoff, event decoding."""

from __future__ import annotations

import os
import socket
import struct
from pathlib import Path

import pytest

from op_dbus.daemon.backoff import DriftBackoff
from op_dbus.daemon.lock import AlreadyRunning, DaemonLock
from op_dbus.daemon.notify import Notifier
from op_dbus.plugins.lxc.watcher import settled_change
from op_dbus.plugins.net.watcher import message_kinds
from op_dbus.plugins.systemd.watcher import unit_of_path


def receiver(address: str) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(2)
    return sock


def test_notify_sends_one_datagram_of_lines(tmp_path: Path) -> None:
    path = str(tmp_path / "n")
    with receiver(path) as sock:
        notifier = Notifier({"NOTIFY_SOCKET": path})
        assert notifier.ready("up")
        lines = sock.recv(4096).decode().splitlines()
        assert lines[:2] == ["READY=1", "STATUS=up"] and lines[2] == f"MAINPID={os.getpid()}"
        assert notifier.watchdog()
        assert sock.recv(4096) == b"WATCHDOG=1"


def test_notify_never_blocks_on_a_full_queue(tmp_path: Path) -> None:
    path = str(tmp_path / "n")
    with receiver(path):  # nobody reads: the queue fills up
        notifier = Notifier({"NOTIFY_SOCKET": path})
        results = [notifier.status("x" * 1000) for _ in range(2000)]
    assert results[0] and not results[-1], "later messages are dropped, not waited for"


def test_notify_abstract_socket_and_absent_manager() -> None:
    name = f"opdbus-test-{os.getpid()}"
    with receiver("\0" + name) as sock:
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).stopping("bye")
        assert sock.recv(4096) == b"STOPPING=1\nSTATUS=bye"
    assert not Notifier({}).ready("nobody listens")
    assert not Notifier({"NOTIFY_SOCKET": "/nonexistent/socket"}).status("gone")


@pytest.mark.parametrize(
    ("env", "interval"),
    [
        ({"WATCHDOG_USEC": "4000000"}, 2.0),
        ({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": str(os.getpid())}, 2.0),
        ({"WATCHDOG_USEC": "4000000", "WATCHDOG_PID": "1"}, None),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_the_timeout(env: dict[str, str], interval: float | None) -> None:
    assert Notifier(env).watchdog_interval == interval


def test_lock_admits_one_daemon_per_data_dir(tmp_path: Path) -> None:
    with DaemonLock(tmp_path / "data") as first:
        assert first.path.read_text() == f"{os.getpid()}\n"
        with pytest.raises(AlreadyRunning, match=f"pid {os.getpid()}"):
            DaemonLock(tmp_path / "data").acquire()
        with DaemonLock(tmp_path / "other"):
            pass  # another data dir is another host's worth of state
    with DaemonLock(tmp_path / "data"):
        pass  # released: the next daemon may start


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_backoff_holds_a_resource_that_keeps_drifting_back() -> None:
    clock = Clock()
    backoff = DriftBackoff(threshold=3, window=60, base=1, cap=8, clock=clock)
    assert [backoff.repaired("net:port/p") for _ in range(2)] == [0, 0]
    assert backoff.held("net:port/p") == 0
    assert backoff.repaired("net:port/p") == 1, "the third repair within the window"
    assert backoff.held("net:port/p") == 1 and backoff.held("net:port/q") == 0
    clock.now += 1
    assert backoff.held("net:port/p") == 0
    assert [backoff.repaired("net:port/p") for _ in range(4)] == [2, 4, 8, 8], "doubling, capped"
    clock.now += 61
    assert backoff.repaired("net:port/p") == 0, "a quiet window forgives"
    backoff.repaired("net:port/p")
    backoff.repaired("net:port/p")
    backoff.clear()
    assert backoff.held("net:port/p") == 0 and backoff.repaired("net:port/p") == 0


@pytest.mark.parametrize(
    ("path", "unit"),
    [
        ("/org/freedesktop/systemd1/unit/dbus_2eservice", "dbus.service"),
        ("/org/freedesktop/systemd1/unit/opdbus_2dt_2dlong_2eservice", "opdbus-t-long.service"),
        ("/org/freedesktop/systemd1/unit/getty_40tty1_2eservice", "getty@tty1.service"),
        ("/org/freedesktop/systemd1/unit/a_5fb_2eservice", "a_b.service"),
    ],
)
def test_unit_names_from_object_paths(path: str, unit: str) -> None:
    assert unit_of_path(path) == unit


def nlmsg(kind: int, payload: bytes = b"\0" * 3) -> bytes:
    length = 16 + len(payload)
    return struct.pack("=IHHII", length, kind, 0, 0, 0) + payload + b"\0" * (-length % 4)


def test_netlink_notifications_are_classified() -> None:
    assert message_kinds(nlmsg(16)) == {"link"}
    assert message_kinds(nlmsg(21) + nlmsg(24) + nlmsg(3)) == {"address", "route"}
    assert message_kinds(nlmsg(3)) == set(), "NLMSG_DONE is no event"
    assert message_kinds(struct.pack("=IHHII", 4, 16, 0, 0, 0)) == set(), "bad length stops"


def test_lxc_monitor_lines_trigger_on_settled_states_only() -> None:
    assert settled_change("'gateway' changed state to [STOPPED]\n") == "gateway STOPPED"
    assert settled_change("'xray-client' changed state to [RUNNING]") == "xray-client RUNNING"
    assert settled_change("'gateway' changed state to [STOPPING]") is None
    assert settled_change("'gateway' exited with status [0]") is None


def test_inotify_event_names_are_read() -> None:
    from op_dbus.daemon.watchers.statefile import changed_names

    def event(name: bytes) -> bytes:
        padded = name + b"\0" * (16 - len(name))
        return struct.pack("iIII", 1, 0x80, 0, len(padded)) + padded

    assert changed_names(event(b"state.json") + event(b".state.json.swp")) == {
        "state.json",
        ".state.json.swp",
    }
