"""The transaction service's pure parts: the host-wide apply lock, overlaying partial states,
and the error vocabulary's round trip through D-Bus error names."""

from __future__ import annotations

import asyncio
import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

from op_dbus.engine.lock import LOCK_NAME, ApplyLock, read_holder
from op_dbus.engine.overlay import overlay
from op_dbus.errors import (
    AccessDenied,
    Busy,
    ComponentMissing,
    InvalidInput,
    NothingPending,
    OpError,
    Refused,
    from_dbus,
)
from op_dbus.exitcodes import ExitCode


async def test_the_lock_names_its_holder_and_frees_itself(tmp_path: Path) -> None:
    lock = ApplyLock(tmp_path, wait=0.2)
    assert read_holder(tmp_path) is None
    async with lock.held("command=op-dbus apply a.json"):
        holder = read_holder(tmp_path)
        assert holder is not None and holder["pid"] == os.getpid()
        assert holder["actor"] == "command=op-dbus apply a.json"
    assert read_holder(tmp_path) is None, "released, and the file no longer names anyone"


def hold_in_child(tmp_path: Path) -> subprocess.Popen[str]:
    """Another process that takes the lock (as a CLI apply would) and waits for stdin."""
    code = (
        "import asyncio, sys\n"
        "from op_dbus.engine.lock import ApplyLock\n"
        "async def main():\n"
        f"    async with ApplyLock({str(tmp_path)!r}).held('other apply'):\n"
        "        print('held', flush=True)\n"
        "        sys.stdin.readline()\n"
        "asyncio.run(main())\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "held"
    return child


async def test_a_second_writer_waits_then_fails_naming_the_holder(tmp_path: Path) -> None:
    child = hold_in_child(tmp_path)
    try:
        with pytest.raises(Busy) as refused:
            async with ApplyLock(tmp_path, wait=0.3).held("me"):
                pytest.fail("the lock was taken while another process held it")
        assert f"pid {child.pid} (other apply" in refused.value.message
        assert "nothing was changed" in refused.value.message
        assert refused.value.code == ExitCode.UNEXPECTED
    finally:
        child.communicate("\n", timeout=10)


async def test_a_waiting_writer_gets_the_lock_once_it_is_free(tmp_path: Path) -> None:
    child = hold_in_child(tmp_path)
    got = asyncio.Event()

    async def second() -> None:
        async with ApplyLock(tmp_path, wait=10).held("second"):
            got.set()

    task = asyncio.create_task(second())
    await asyncio.sleep(0.3)
    assert not got.is_set(), "it waits while the other holds the lock"
    child.communicate("\n", timeout=10)
    await asyncio.wait_for(task, 10)
    assert got.is_set()


def test_a_symlink_planted_at_the_lock_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("precious")
    (tmp_path / LOCK_NAME).symlink_to(target)

    async def take() -> None:
        async with ApplyLock(tmp_path, wait=0.1).held("me"):
            pass

    with pytest.raises(OpError, match=r"cannot be written .*nothing was changed"):
        asyncio.run(take())
    assert target.read_text() == "precious"


def test_read_holder_never_takes_the_lock_for_long(tmp_path: Path) -> None:
    (tmp_path / LOCK_NAME).write_text("")
    assert read_holder(tmp_path) is None
    fd = os.open(tmp_path / LOCK_NAME, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free again after the read
    finally:
        os.close(fd)


def test_overlay_merges_named_items_and_replaces_plain_lists() -> None:
    base = {
        "net": {
            "interfaces": [
                {"name": "ovsbr0", "type": "ovs-bridge", "ports": ["eth0"]},
                {"name": "mesh", "type": "ovs-bridge"},
            ]
        },
        "systemd": {"units": {"a.service": {"enabled": True}}},
    }
    change = {
        "net": {"interfaces": [{"name": "mesh", "ports": ["vi100"]}, {"name": "lan0"}]},
        "systemd": {"units": {"a.service": {"active_state": "active"}, "b.service": {}}},
        "lxc": {"containers": [{"name": "c1"}]},
    }
    merged = overlay(base, change)
    assert merged["net"]["interfaces"] == [
        {"name": "ovsbr0", "type": "ovs-bridge", "ports": ["eth0"]},
        {"name": "mesh", "type": "ovs-bridge", "ports": ["vi100"]},
        {"name": "lan0"},
    ]
    assert merged["systemd"]["units"] == {
        "a.service": {"enabled": True, "active_state": "active"},
        "b.service": {},
    }
    assert merged["lxc"] == {"containers": [{"name": "c1"}]}
    assert base["net"]["interfaces"][1] == {"name": "mesh", "type": "ovs-bridge"}, "untouched"
    later = overlay(base, change, {"net": {"interfaces": [{"name": "ovsbr0", "ports": ["eth1"]}]}})
    assert later["net"]["interfaces"][0]["ports"] == ["eth0", "eth1"], "a partial change adds"
    pruned = overlay(base, {"net": {"interfaces": [{"name": "lan0"}]}}, replace=True)
    assert pruned["net"] == {"interfaces": [{"name": "lan0"}]}, "an authoritative one replaces"
    assert pruned["systemd"] == base["systemd"]


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidInput("bad"), ExitCode.INVALID_INPUT),
        (Refused("lxc:web", "not created by op-dbus"), ExitCode.INVALID_INPUT),
        (AccessDenied("needs root"), ExitCode.INVALID_INPUT),
        (Busy("held"), ExitCode.UNEXPECTED),
        (NothingPending("none"), ExitCode.UNEXPECTED),
        (ComponentMissing("no ovsdb"), ExitCode.COMPONENT_MISSING),
        (OpError("boom"), ExitCode.UNEXPECTED),
    ],
)
def test_errors_keep_their_kind_and_code_through_dbus(error: OpError, code: ExitCode) -> None:
    assert error.code == code
    back = from_dbus(error.dbus_name, error.message)
    assert type(back) is type(error) and back.message == error.message and back.code == code


def test_the_bus_refusing_a_call_is_access_denied() -> None:
    back = from_dbus("org.freedesktop.DBus.Error.AccessDenied", "Rejected send message")
    assert isinstance(back, AccessDenied) and back.code == ExitCode.INVALID_INPUT
    assert "needs root" in back.message
