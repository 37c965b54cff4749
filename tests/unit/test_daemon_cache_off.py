"""`op-dbus run --no-cache` (NixOS `enableCache = false`): QueryState reads the host every time."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from memstore import World
from typer.testing import CliRunner

from op_dbus.cli.main import app
from op_dbus.daemon.reconcile import Policy, Reconciler
from op_dbus.endpoints import Endpoints
from op_dbus.engine import host as host_module
from op_dbus.engine.host import Host


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> World:
    world = World()
    monkeypatch.setattr(host_module, "make_plugin", lambda name, _: world.plugins()[name])
    return world


async def answers_after_unseen_change(world: World, *, use_cache: bool) -> str:
    """What QueryState says of `a` after it changed on the host with no event for it."""
    host = Host(Endpoints(data_dir="/nonexistent"), ("systemd", "net", "lxc"), use_ledger=False)
    r = Reconciler(host, Policy.ENFORCE, use_cache=use_cache)
    world.stores["net"].data["a"] = "before"
    await r.cached_state()
    world.stores["net"].data["a"] = "after"  # e.g. an LXC config edit: no watcher reports it
    return (await r.cached_state())["state"]["plugins"]["net"]["items"]["a"]


async def test_without_the_cache_every_query_reads_the_host(world: World) -> None:
    assert await answers_after_unseen_change(world, use_cache=False) == "after"
    assert world.count("query")["net"] == 2


async def test_with_the_cache_a_query_is_answered_from_memory(world: World) -> None:
    assert await answers_after_unseen_change(world, use_cache=True) == "before"
    assert world.count("query")["net"] == 1


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        ([], {}, True),
        (["--no-cache"], {}, False),
        ([], {"OPDBUS_CACHE": "false"}, False),
        (["--cache"], {"OPDBUS_CACHE": "false"}, True),
    ],
)
def test_run_passes_the_cache_choice_to_the_daemon(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    args: list[str],
    env: dict[str, str],
    expected: bool,
) -> None:
    seen: dict[str, bool] = {}

    class Recorder:
        def __init__(self, options: Any) -> None:
            seen["use_cache"] = options.use_cache

        async def run(self) -> int:
            return 0

    import op_dbus.daemon.service as service

    monkeypatch.setattr(service, "Daemon", Recorder)
    result = CliRunner().invoke(
        app, ["--data-dir", str(tmp_path), "run", "--oneshot", *args], env=env
    )
    assert result.exit_code == 0, result.output
    assert seen == {"use_cache": expected}
