"""The net plugin's guarded transaction against a real ovsdb-server (no vswitchd, OVS rows only).

A concurrent writer is simulated by changing a row with ovs-vsctl right after the plugin's
read: the `wait` guard must make the server refuse the stale transaction, and the plugin must
re-read and retry instead of overwriting the other writer's change.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from native_fixtures import PrivateOvs

from op_dbus.endpoints import Endpoints
from op_dbus.plugins.base import Action, ApplyError
from op_dbus.plugins.net import plugin as net
from op_dbus.plugins.net.plugin import NetPlugin


def interfere(monkeypatch: pytest.MonkeyPatch, ovs: PrivateOvs, times: int) -> list[int]:
    """After each of the plugin's first `times` reads, another writer changes bridge mesh."""
    real = net.read_snapshot
    reads: list[int] = []

    async def read_then_someone_writes(*args, **kwargs):
        snap = await real(*args, **kwargs)
        reads.append(len(reads))
        if len(reads) <= times:
            ovs.vsctl("set", "Bridge", "mesh", f"external_ids:theirs={len(reads)}")
        return snap

    monkeypatch.setattr(net, "read_snapshot", read_then_someone_writes)
    return reads


@pytest.fixture
async def mesh(ovs: PrivateOvs) -> AsyncIterator[tuple[NetPlugin, list[Action]]]:
    """Bridge mesh in place, and the plugin's actions that would add external_ids role=mesh."""
    plugin = NetPlugin(endpoints=Endpoints(ovsdb=ovs.target))
    try:
        await plugin.apply(plugin.diff(await plugin.query(), {"interfaces": [_mesh({})]}))
        yield plugin, plugin.diff(await plugin.query(), {"interfaces": [_mesh({"role": "mesh"})]})
    finally:
        await plugin.close()


async def test_concurrent_change_is_not_clobbered_the_apply_retries(
    ovs: PrivateOvs, mesh: tuple[NetPlugin, list[Action]], monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin, actions = mesh
    reads = interfere(monkeypatch, ovs, times=1)

    assert await plugin.apply(actions) == actions

    assert len(reads) == 2  # refused once, rebuilt from a fresh read
    ids = ovs.vsctl("get", "Bridge", "mesh", "external_ids").replace('"', "")
    assert "theirs=1" in ids and "role=mesh" in ids and "op-dbus-owner=op-dbus" in ids


async def test_persistent_interference_fails_cleanly_after_bounded_retries(
    ovs: PrivateOvs, mesh: tuple[NetPlugin, list[Action]], monkeypatch: pytest.MonkeyPatch
) -> None:
    plugin, actions = mesh
    reads = interfere(monkeypatch, ovs, times=100)

    with pytest.raises(ApplyError, match="kept changing") as caught:
        await plugin.apply(actions)

    assert len(reads) == net.ATTEMPTS
    assert caught.value.done == []
    assert "role" not in ovs.vsctl("get", "Bridge", "mesh", "external_ids")


async def test_one_apply_is_one_transaction_without_vswitchd(ovs: PrivateOvs) -> None:
    """Bridge, ports and their owner marks land together; datapath is OVS's default here."""
    plugin = NetPlugin(endpoints=Endpoints(ovsdb=ovs.target))
    desired = {
        "interfaces": [
            {"name": "br0", "type": "ovs-bridge", "ports": ["p1"], "stp": True},
            {"name": "p2", "type": "ovs-internal", "bridge": "br0", "vlan": 10},
        ]
    }
    try:
        actions = plugin.diff(await plugin.query(), desired)
        assert await plugin.apply(actions) == actions
        assert sorted(ovs.vsctl("list-ports", "br0").split()) == ["p1", "p2"]
        assert ovs.vsctl("get", "Port", "p2", "tag") == "10"
        assert ovs.vsctl("get", "Interface", "p2", "type") == "internal"
        assert ovs.vsctl("get", "Bridge", "br0", "stp_enable") == "true"
        assert plugin.diff(await plugin.query(), desired) == []
        assert await plugin.verify(desired) == []
    finally:
        await plugin.close()


def _mesh(external_ids: dict[str, str]) -> dict:
    entry = {"name": "mesh", "type": "ovs-bridge", "ports": []}
    return {**entry, "external_ids": external_ids} if external_ids else entry
