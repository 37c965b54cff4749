"""make_plan: every declared section is planned, or says exactly why it cannot be."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest
from memstore import NAMES, MemLxc, World

from op_dbus.endpoints import Endpoints
from op_dbus.engine.apply import apply_plan
from op_dbus.engine.plan import make_plan
from op_dbus.errors import Refused
from op_dbus.exitcodes import ExitCode
from op_dbus.plugins import make_plugin
from op_dbus.plugins.base import Action, ActionKind, Section


def world_with_data() -> World:
    world = World()
    for name, store in world.stores.items():
        store.data = {"a": f"{name}-a", "f": f"{name}-foreign"}
        store.owned = {"a"}
    return world


DESIRED = {name: {"items": {"a": f"{name}-a2", "n": 1}} for name in NAMES}


def expected_actions(name: str) -> list[Action]:
    return [
        Action(name, ActionKind.CREATE, "n", None, 1),
        Action(name, ActionKind.MODIFY, "a", f"{name}-a", f"{name}-a2"),
    ]


async def test_plan_covers_every_plugin_in_order() -> None:
    world = world_with_data()
    plan = await make_plan({n: DESIRED[n] for n in reversed(NAMES)}, world.plugins())
    assert [e.name for e in plan.plugins] == ["systemd", "net", "lxc"]
    for entry in plan.plugins:
        assert entry.status == "ready"
        assert entry.reason == ""
        assert entry.desired == DESIRED[entry.name]
        assert entry.current == {"items": world.stores[entry.name].data, "owned": ["a"]}
        assert entry.actions == expected_actions(entry.name)
    assert plan.actions == [a for n in NAMES for a in expected_actions(n)]
    assert plan.pending
    assert plan.blocked == []


async def test_undeclared_sections_are_not_planned() -> None:
    world = world_with_data()
    plan = await make_plan({"net": DESIRED["net"]}, world.plugins())
    assert [e.name for e in plan.plugins] == ["net"]
    assert world.count("query") == {"net": 1}


async def test_unknown_section_is_refused() -> None:
    with pytest.raises(ValueError, match="bogus"):
        await make_plan({"bogus": {}}, {})


async def test_matching_state_has_nothing_pending() -> None:
    world = world_with_data()
    desired = {n: {"items": {"a": f"{n}-a"}} for n in NAMES}
    plan = await make_plan(desired, world.plugins())
    assert plan.actions == []
    assert not plan.pending


async def test_unavailable_is_reported_and_not_queried() -> None:
    world = world_with_data()
    world.faults.unavailable = {"net"}
    plan = await make_plan(DESIRED, world.plugins())
    summary = [(e.name, e.status, e.reason, e.current) for e in plan.plugins]
    assert summary[1] == ("net", "unavailable", "net backend socket missing", None)
    assert [e.status for e in plan.plugins] == ["ready", "unavailable", "ready"]
    assert [e.name for e in plan.blocked] == ["net"]
    assert "net" not in world.count("query")


async def test_query_raising_is_an_error_status_not_a_crash() -> None:
    world = world_with_data()
    world.faults.query_error = {"net"}
    plan = await make_plan(DESIRED, world.plugins())
    net = plan.get("net")
    assert net is not None
    assert (net.status, net.reason, net.actions) == (
        "error",
        "query failed: net backend down",
        [],
    )
    assert [e.name for e in plan.blocked] == ["net"]
    assert [e.status for e in plan.plugins] == ["ready", "error", "ready"]


async def test_plugins_are_queried_concurrently() -> None:
    """Each query waits for the other two: a sequential planner would deadlock here."""
    world = world_with_data()
    barrier = asyncio.Barrier(3)
    plugins = world.plugins()
    for plugin in plugins.values():
        original = plugin.query

        async def query(scope=None, original=original):
            await barrier.wait()
            return await original(scope)

        plugin.query = query  # type: ignore[method-assign]
    plan = await asyncio.wait_for(make_plan(DESIRED, plugins), timeout=2)
    assert [e.status for e in plan.plugins] == ["ready"] * 3


def test_make_plugin_refuses_an_unknown_section() -> None:
    with pytest.raises(ValueError, match="unknown plugin 'x'"):
        make_plugin("x", Endpoints())


class RefusingLxc(MemLxc):
    """An lxc whose host rules out any item named "eth0" (like a veth the host has)."""

    async def check(self, current: Section, desired: Section, document: Mapping[str, Section]):
        self.world.calls.append((self.name, "check"))
        assert set(document) == {"net", "lxc"}, "check sees every section being planned"
        if "eth0" in desired.get("items", {}):
            raise Refused("container/x", "veth eth0: the host already has a device eth0")


async def test_a_refusal_blocks_the_plan_and_apply_changes_nothing() -> None:
    world = world_with_data()
    plugins = {**world.plugins(), "lxc": RefusingLxc(world)}
    desired = {"net": DESIRED["net"], "lxc": {"items": {"eth0": 1}}}
    before = world.snapshot()
    plan = await make_plan(desired, plugins)
    entry = plan.get("lxc")
    assert entry is not None and entry.status == "refused" and entry.actions == []
    assert entry.reason == "container/x: veth eth0: the host already has a device eth0"
    assert plan.refused and [e.name for e in plan.blocked] == ["lxc"]
    result = await apply_plan(plan, plugins)
    assert result.exit_code == ExitCode.INVALID_INPUT
    assert "container/x" in result.message and "nothing changed" in result.message
    assert world.snapshot() == before and world.count("apply") == {}
    assert not (await make_plan({"lxc": {"items": {"a": 1}}}, plugins)).refused


@pytest.mark.parametrize(
    ("error", "text"),
    [
        (RuntimeError("socket closed"), "socket closed"),
        (TimeoutError(), "timed out"),
        (ConnectionResetError(), "the connection failed"),
        (ValueError(), "failed without saying why"),
        (
            FileNotFoundError(2, "No such file or directory", "/run/x.sock"),
            "No such file or directory: /run/x.sock",
        ),
        (
            PermissionError(13, "Permission denied", "/run/db.sock"),
            "Permission denied: /run/db.sock; needs root (run as root or through the daemon)",
        ),
    ],
)
def test_an_error_reads_in_its_own_words_without_a_class_name(error: Exception, text: str) -> None:
    from op_dbus.errors import describe_error

    assert describe_error(error) == text
    assert type(error).__name__ not in describe_error(error)
