"""The lxc plugin's modify step: what it rewrites in a config and what it moves live.

The container manager is a recorder and OVSDB is replaced by recorders of attach/detach, so
each test reads exactly which side effects one diff's actions cause.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import op_dbus.plugins.lxc.plugin as lxc_plugin
from op_dbus.errors import Refused
from op_dbus.native.lxc import Driver, LxcError, Observed
from op_dbus.native.lxc_config import Parsed, Spec
from op_dbus.plugins.base import Action, ApplyError
from op_dbus.plugins.lxc.ovs import PortRow
from op_dbus.plugins.lxc.plugin import LxcPlugin, container_entry


class Recorder(Driver):
    """A driver whose containers are `observed`; it records every other call."""

    def __init__(self, *observed: Observed) -> None:
        self.observed = list(observed)
        self.lists = 0
        self.calls: list[tuple[str, Any]] = []

    async def list(self) -> list[Observed]:
        self.lists += 1
        return self.observed

    async def create(self, spec: Spec) -> None:
        self.calls.append(("create", spec))

    async def finish(self, spec: Spec) -> None:
        self.calls.append(("finish", spec.name))

    async def configure(self, spec: Spec) -> None:
        self.calls.append(("configure", spec))

    async def _start(self, name: str) -> None:
        self.calls.append(("start", name))

    async def stop(self, name: str) -> None:
        self.calls.append(("stop", name))

    async def destroy(self, name: str) -> None:
        self.calls.append(("destroy", name))


def running(name: str, ct_id: str, bridge: str) -> Observed:
    """An owned running container whose config attaches its veth vi<ID> to `bridge`."""
    config = Parsed(owned=True, id=ct_id, bridge=bridge, template="busybox", veth=f"vi{ct_id}")
    return Observed(name, True, 4242, config)


def port(name: str, bridge: str, container: str) -> dict[str, PortRow]:
    return {name: PortRow(name, f"uuid-{name}", bridge, f"uuid-{bridge}", container)}


@pytest.fixture
def ports(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """What the plugin did to OVSDB: ("attach", bridge, port) and ("detach", port)."""
    done: list[tuple[str, ...]] = []

    async def attach(
        _client: object,
        bridge: str,
        name: str,
        _container: str,
        protected: bool = False,
        *_vlan: object,
    ) -> None:
        done.append(("attach", bridge, name, *(("protected",) if protected else ())))

    async def detach(_client: object, name: str) -> None:
        done.append(("detach", name))

    async def set_protected(_client: object, name: str, protected: bool) -> None:
        done.append(("protected", name, str(protected)))

    monkeypatch.setattr(lxc_plugin, "attach", attach)
    monkeypatch.setattr(lxc_plugin, "set_protected", set_protected)
    monkeypatch.setattr(lxc_plugin, "detach", detach)
    monkeypatch.setattr(LxcPlugin, "_ovsdb", lambda self: _none())
    return done


async def _none() -> None:
    return None


def configured_bridges(driver: Recorder) -> list[str | None]:
    return [spec.bridge for call, spec in driver.calls if call == "configure"]


async def test_rollback_of_a_reattached_port_keeps_the_bridge_in_the_config(
    ports: list[tuple[str, ...]],
) -> None:
    """Checkpoint: running, config on mesh, port deleted by hand; the apply re-attached it."""
    gateway = running("gateway", "100", "mesh")
    checkpoint = {"containers": [container_entry(gateway, {})], "stale_ports": []}
    now = {"containers": [container_entry(gateway, port("vi100", "mesh", "gateway"))]}
    driver = Recorder(gateway)
    plugin = LxcPlugin(driver=driver)

    await plugin.apply(plugin.diff(now, checkpoint, exhaustive=True))
    assert configured_bridges(driver) == [], "the config still attaches it to mesh at start"
    assert ports == [("detach", "vi100")]


async def test_a_lost_port_is_reattached_without_rewriting_the_config(
    ports: list[tuple[str, ...]],
) -> None:
    gateway = running("gateway", "100", "mesh")
    now = {"containers": [container_entry(gateway, {})], "stale_ports": []}
    desired = {"containers": [{"id": "100", "name": "gateway", "bridge": "mesh"}]}
    driver = Recorder(gateway)
    plugin = LxcPlugin(driver=driver)

    await plugin.apply(plugin.diff(now, desired))
    assert (configured_bridges(driver), ports) == ([], [("attach", "mesh", "vi100")])


async def test_protecting_a_running_container_sets_its_port_live_and_in_its_hooks(
    ports: list[tuple[str, ...]],
) -> None:
    gateway = running("gateway", "100", "mesh")
    now = {"containers": [container_entry(gateway, port("vi100", "mesh", "gateway"))]}
    assert now["containers"][0]["protected"] is False
    desired = {"containers": [{"id": "100", "name": "gateway", "protected": True}]}
    driver = Recorder(gateway)
    plugin = LxcPlugin(driver=driver)

    await plugin.apply(plugin.diff(now, desired))
    assert ports == [("protected", "vi100", "True")], "no restart, no re-attach"
    assert [(call, spec.protected) for call, spec in driver.calls] == [("configure", True)]


async def test_moving_bridge_rewrites_the_config_and_moves_the_port_and_back(
    ports: list[tuple[str, ...]],
) -> None:
    gateway = running("gateway", "100", "mesh")
    before = {"containers": [container_entry(gateway, port("vi100", "mesh", "gateway"))]}
    desired = {"containers": [{"id": "100", "name": "gateway", "bridge": "mesh2"}]}
    plugin = LxcPlugin(driver=Recorder(gateway))
    await plugin.apply(plugin.diff(before, desired))

    moved = running("gateway", "100", "mesh2")
    after = {"containers": [container_entry(moved, port("vi100", "mesh2", "gateway"))]}
    driver = Recorder(moved)
    plugin = LxcPlugin(driver=driver)
    await plugin.apply(plugin.diff(after, before, exhaustive=True))
    assert configured_bridges(driver) == ["mesh"]
    assert ports == [("attach", "mesh2", "vi100"), ("attach", "mesh", "vi100")]


async def test_containers_are_listed_once_per_apply(ports: list[tuple[str, ...]]) -> None:
    gateway, warp = running("gateway", "100", "mesh"), running("warp", "101", "mesh")
    now = {"containers": [container_entry(gateway, {}), container_entry(warp, {})]}
    desired = {
        "containers": [
            {"id": "100", "name": "gateway", "running": False},
            {"id": "101", "name": "warp", "running": False},
        ]
    }
    driver = Recorder(gateway, warp)
    plugin = LxcPlugin(driver=driver)

    await plugin.apply(plugin.diff(now, desired))
    assert driver.lists == 1
    assert driver.calls == [("stop", "gateway"), ("stop", "warp")]


async def test_apply_refuses_to_destroy_a_container_op_dbus_did_not_create() -> None:
    stranger = Observed("byhand", False, None, Parsed(owned=False))
    driver = Recorder(stranger)
    plugin = LxcPlugin(driver=driver)
    now = {"containers": [container_entry(stranger, {})]}
    with pytest.raises(ApplyError, match="not created by op-dbus"):
        await plugin.apply(plugin.diff(now, {"containers": []}, exhaustive=True))
    assert driver.calls == []


@pytest.fixture
def host_net(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """The host's OVS bridges as the plugin's check reads them (its devices: lo, eth0, vi100)."""
    bridges = {"mesh"}

    async def read_bridges(_client: object) -> set[str]:
        return bridges

    monkeypatch.setattr(lxc_plugin, "read_bridges", read_bridges)
    monkeypatch.setattr(lxc_plugin, "host_links", lambda: {"lo", "eth0", "vi100", "mesh"})
    monkeypatch.setattr(LxcPlugin, "_ovsdb", lambda self: _none())
    return bridges


async def test_check_refuses_a_veth_the_host_has_but_not_the_containers_own(
    host_net: set[str],
) -> None:
    gateway = running("gateway", "100", "mesh")
    plugin = LxcPlugin(driver=Recorder(gateway))
    current = {"containers": [container_entry(gateway, {})]}

    def desired(*containers: dict[str, Any]) -> dict[str, Any]:
        return {"containers": list(containers)}

    own = {"id": "100", "name": "gateway", "veth": "vi100", "bridge": "mesh"}
    await plugin.check(current, desired(own), {})
    for veth in ("eth0", "lo"):
        new = {"id": "101", "name": "warp", "veth": veth, "bridge": "mesh"}
        with pytest.raises(Refused, match=f"container/warp: veth {veth}: the host already"):
            await plugin.check(current, desired(own, new), {})
    taken = {"id": "101", "name": "warp", "veth": "vi100"}
    with pytest.raises(Refused, match="container/warp: veth vi100 is container gateway's"):
        await plugin.check(current, desired(taken), {})
    gone = {"id": "101", "name": "warp", "veth": "eth0", "state": "absent"}
    await plugin.check(current, desired(gone), {})


async def test_check_refuses_a_bridge_neither_the_host_nor_the_file_has(
    host_net: set[str],
) -> None:
    plugin = LxcPlugin(driver=Recorder())
    want = {"containers": [{"id": "101", "name": "warp", "veth": "vi101", "bridge": "mesh2"}]}
    with pytest.raises(Refused, match="container/warp: bridge mesh2 is neither on the host"):
        await plugin.check({"containers": []}, want, {"lxc": want})
    net = {"interfaces": [{"name": "mesh2", "type": "ovs-bridge"}]}
    await plugin.check({"containers": []}, want, {"net": net, "lxc": want})
    host_net.add("mesh2")
    await plugin.check({"containers": []}, want, {"lxc": want})


class Overlapping(Recorder):
    """Creations that wait for each other: each returns only once `wanted` of them are in
    flight at the same time (a one-at-a-time apply never gets there), or fails when its
    name is in `failing` (once the others are under way)."""

    def __init__(self, wanted: int, failing: frozenset[str] = frozenset()) -> None:
        super().__init__()
        self.wanted, self.failing = wanted, failing
        self.in_flight = 0
        self.most = 0
        self.together = asyncio.Event()

    async def create(self, spec: Spec) -> None:
        self.calls.append(("create", spec.name))
        self.in_flight += 1
        self.most = max(self.most, self.in_flight)
        if self.in_flight >= self.wanted:
            self.together.set()
        try:
            await self.together.wait()
            if spec.name in self.failing:
                raise LxcError(f"lxc-create {spec.name}: template failed")
        finally:
            self.in_flight -= 1


def creations(count: int) -> list[Action]:
    plugin = LxcPlugin(driver=Recorder())
    desired = {"containers": [{"id": str(100 + i), "name": f"c{i}"} for i in range(count)]}
    return plugin.diff({"containers": []}, desired)


async def test_containers_are_created_concurrently_but_no_more_than_the_cores(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(lxc_plugin, "parallelism", lambda: 3)
    driver = Overlapping(wanted=3)
    actions = creations(7)
    done = await asyncio.wait_for(LxcPlugin(driver=driver).apply(actions), 5)
    assert done == actions
    assert driver.most == 3


async def test_a_failed_creation_starts_nothing_new_and_reports_what_took_effect(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(lxc_plugin, "parallelism", lambda: 2)
    driver = Overlapping(wanted=2, failing=frozenset({"c1"}))
    actions = creations(5)
    with pytest.raises(ApplyError) as failure:
        await asyncio.wait_for(LxcPlugin(driver=driver).apply(actions), 5)
    assert failure.value.failed == actions[1]
    assert "template failed" in failure.value.reason
    assert failure.value.done == [actions[0]], "c0 was in flight with c1 and finished"
    created = [name for kind, name in driver.calls if kind == "create"]
    assert created == ["c0", "c1"], "nothing starts after it"
    assert ("finish", "c0") in driver.calls and ("finish", "c1") not in driver.calls


class SlowFinish(Recorder):
    """A finish (the synced config writes) that returns only once the next container's
    template has started: a finish holding the working slot would never see it."""

    def __init__(self) -> None:
        super().__init__()
        self.second = asyncio.Event()

    async def create(self, spec: Spec) -> None:
        self.calls.append(("create", spec.name))
        if spec.name == "c1":
            self.second.set()

    async def finish(self, spec: Spec) -> None:
        if spec.name == "c0":
            await self.second.wait()
        self.calls.append(("finish", spec.name))


async def test_the_config_writes_leave_the_working_slot_to_the_next_template(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(lxc_plugin, "parallelism", lambda: 1)
    driver = SlowFinish()
    actions = creations(2)
    assert await asyncio.wait_for(LxcPlugin(driver=driver).apply(actions), 5) == actions
    assert driver.calls[:2] == [("create", "c0"), ("create", "c1")]
    assert sorted(driver.calls[2:]) == [("finish", "c0"), ("finish", "c1")]


class SlowStops(Recorder):
    """Stops that wait for each other, as lxc-stop waits for a container's shutdown: each
    returns only once `wanted` of them are in flight at the same time."""

    def __init__(self, wanted: int, *observed: Observed) -> None:
        super().__init__(*observed)
        self.wanted, self.in_flight = wanted, 0
        self.together = asyncio.Event()

    async def stop(self, name: str) -> None:
        self.calls.append(("stop", name))
        self.in_flight += 1
        if self.in_flight >= self.wanted:
            self.together.set()
        await self.together.wait()


async def test_stops_wait_together_beyond_the_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopping is waiting (for the container's shutdown), not work: the stop requests go out
    together instead of two at a time, each waiting for its own timeout."""
    monkeypatch.setattr(lxc_plugin, "parallelism", lambda: 2)
    observed = [running(f"c{i}", str(100 + i), "mesh") for i in range(6)]
    driver = SlowStops(6, *observed)
    plugin = LxcPlugin(driver=driver)
    current = {"containers": [container_entry(o, {}) for o in observed]}
    desired = {
        "containers": [{"id": o.config.id, "name": o.name, "running": False} for o in observed]
    }
    actions = plugin.diff(current, desired)
    done = await asyncio.wait_for(plugin.apply(actions), 5)
    assert done == actions
    assert sorted(name for kind, name in driver.calls if kind == "stop") == [
        o.name for o in observed
    ]


def test_phases_keep_the_diff_order_and_group_what_may_run_together() -> None:
    gateway, warp = running("gateway", "100", "mesh"), running("warp", "101", "mesh")
    now = {
        "containers": [container_entry(gateway, {}), container_entry(warp, {})],
        "stale_ports": [{"name": "vi9", "bridge": "mesh", "container": "old"}],
    }
    desired = {
        "containers": [
            {"id": "100", "name": "gateway", "running": False},
            {"id": "101", "name": "warp", "state": "absent"},
            {"id": "102", "name": "new1"},
            {"id": "103", "name": "new2"},
        ]
    }
    actions = LxcPlugin(driver=Recorder()).diff(now, desired)
    assert [[a.resource for a in phase] for phase in lxc_plugin.phases(actions)] == [
        ["container/warp"],
        ["port/vi9"],
        ["container/new1", "container/new2"],
        ["container/gateway"],
    ]
