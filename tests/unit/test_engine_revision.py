"""A plan's revision binds it to the host it was read from: the Host refuses to apply it
(under its apply lock, before anything is touched) once the host has changed."""

from __future__ import annotations

from typing import Any

import pytest
from memstore import World

from op_dbus.endpoints import Endpoints
from op_dbus.engine.host import Host
from op_dbus.engine.options import ApplyOptions
from op_dbus.errors import Refused
from op_dbus.exitcodes import ExitCode

DESIRED = {"net": {"items": {"br0": "up"}}}


def host_over(world: World, tmp_path: Any) -> Host:
    host = Host(Endpoints(data_dir=str(tmp_path)), ("systemd", "net", "lxc"), use_ledger=False)
    host.plugins = dict(world.plugins())
    return host


async def test_the_revision_is_the_same_while_the_host_is(tmp_path: Any) -> None:
    world = World()
    host = host_over(world, tmp_path)
    first, second = await host.plan(DESIRED), await host.plan(DESIRED)
    assert first.revision == second.revision
    assert first.to_json()["revision"] == first.revision
    world.stores["net"].data["other"] = "foreign"
    assert (await host.plan(DESIRED)).revision != first.revision


async def test_a_stale_revision_is_refused_and_nothing_changes(tmp_path: Any) -> None:
    world = World()
    host = host_over(world, tmp_path)
    shown = await host.plan(DESIRED)
    world.stores["net"].data["eth9"] = "appeared"  # someone else changed the host
    before = world.snapshot()
    with pytest.raises(Refused) as refused:
        await host.apply(DESIRED, ApplyOptions("test", "full", expect_revision=shown.revision))
    assert refused.value.resource == "plan"
    assert "make a new plan" in refused.value.reason
    assert world.snapshot() == before
    assert world.count("apply") == {}


async def test_the_current_revision_applies(tmp_path: Any) -> None:
    world = World()
    host = host_over(world, tmp_path)
    shown = await host.plan(DESIRED)
    change = await host.apply(DESIRED, ApplyOptions("test", "full", expect_revision=shown.revision))
    assert change.result.exit_code == ExitCode.OK
    assert world.stores["net"].data == {"br0": "up"}
