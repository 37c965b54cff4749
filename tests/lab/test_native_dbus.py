"""D-Bus helpers against a real, private system-type dbus-daemon."""

from __future__ import annotations

import subprocess

import pytest
from dbus_fast.aio import MessageBus
from dbus_fast.errors import DBusError
from native_fixtures import ACTIVATABLE_NAME, PrivateBus, private_system_bus

from op_dbus.lab import Lab
from op_dbus.native.dbus import (
    BUS_NAME,
    BUS_PATH,
    activatable_names,
    call,
    connect_system_bus,
    get_properties,
    name_has_owner,
    unwrap,
)
from op_dbus.native.systemd import JobWatcher

pytestmark = pytest.mark.lab

SYSTEMD = "org.freedesktop.systemd1"


@pytest.fixture(scope="module")
def private_bus():
    with private_system_bus() as bus:
        yield bus


async def test_connect_says_hello(private_bus: PrivateBus) -> None:
    bus = await connect_system_bus(private_bus.address)
    try:
        assert bus.unique_name is not None and bus.unique_name.startswith(":")
    finally:
        bus.disconnect()


async def test_get_properties_unwraps_variants(private_bus: PrivateBus) -> None:
    bus = await connect_system_bus(private_bus.address)
    try:
        props = await get_properties(bus, BUS_NAME, BUS_PATH, BUS_NAME)
    finally:
        bus.disconnect()
    assert "org.freedesktop.DBus.Monitoring" in props["Interfaces"]
    assert all(isinstance(name, str) for name in props["Interfaces"])
    assert isinstance(props["Features"], list)


async def test_get_properties_of_unknown_service_raises(private_bus: PrivateBus) -> None:
    bus = await connect_system_bus(private_bus.address)
    try:
        with pytest.raises(DBusError) as caught:
            await get_properties(bus, "org.opdbus.Nobody", "/", "org.opdbus.Nobody")
    finally:
        bus.disconnect()
    assert caught.value.type == "org.freedesktop.DBus.Error.ServiceUnknown"


async def test_name_has_owner_sees_other_connections(private_bus: PrivateBus) -> None:
    owner = await connect_system_bus(private_bus.address)
    observer = await connect_system_bus(private_bus.address)
    try:
        assert await name_has_owner(observer, BUS_NAME)
        assert not await name_has_owner(observer, "org.opdbus.Test.Owned")
        await owner.request_name("org.opdbus.Test.Owned")
        assert await name_has_owner(observer, "org.opdbus.Test.Owned")
        assert await name_has_owner(observer, owner.unique_name)
    finally:
        owner.disconnect()
        observer.disconnect()


async def test_activatable_names_lists_service_files(private_bus: PrivateBus) -> None:
    bus = await connect_system_bus(private_bus.address)
    try:
        names = await activatable_names(bus)
        assert ACTIVATABLE_NAME in names
        assert not await name_has_owner(bus, ACTIVATABLE_NAME)  # listed, not started
    finally:
        bus.disconnect()
    assert BUS_NAME in names


async def test_connect_to_missing_socket_raises(private_bus: PrivateBus) -> None:
    with pytest.raises(OSError):
        await connect_system_bus(f"unix:path={private_bus.dir}/nobody")


async def match_rules(bus: MessageBus) -> int:
    """How many match rules the bus daemon holds for this connection (its Stats interface)."""
    stats = "org.freedesktop.DBus.Debug.Stats"
    (found,) = await call(
        bus, BUS_NAME, BUS_PATH, stats, "GetConnectionStats", "s", [bus.unique_name]
    )
    return unwrap(found)["MatchRules"]


async def test_job_watcher_failing_to_open_leaves_nothing_on_the_bus(
    private_bus: PrivateBus,
) -> None:
    """No systemd on this bus: Subscribe fails once the handler and match rule are in place."""
    bus = await connect_system_bus(private_bus.address)
    try:
        with pytest.raises(DBusError):
            async with JobWatcher(bus):
                pass
        assert bus._user_message_handlers == []
        assert await match_rules(bus) == 0
    finally:
        bus.disconnect()


async def test_systemd_manager_properties_in_the_lab(lab: Lab) -> None:
    """Against the lab's real systemd, cross-checked with busctl (a client nobody here wrote)."""
    address = lab.env()["OPDBUS_SYSTEM_BUS"]
    bus = await connect_system_bus(address)
    try:
        props = await get_properties(
            bus, SYSTEMD, "/org/freedesktop/systemd1", f"{SYSTEMD}.Manager"
        )
        assert await name_has_owner(bus, SYSTEMD)
    finally:
        bus.disconnect()
    busctl = subprocess.run(
        [
            *("busctl", f"--address={address}", "get-property", SYSTEMD),
            *("/org/freedesktop/systemd1", f"{SYSTEMD}.Manager", "Version"),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert busctl.strip() == f's "{props["Version"]}"'
    assert props["SystemState"] in ("running", "degraded")
    assert isinstance(props["Environment"], list)
