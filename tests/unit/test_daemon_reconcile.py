"""The reconciler's policy on drift, and try-and-confirm, over the in-memory plugins."""

from __future__ import annotations

import asyncio

import pytest
from memstore import World

from op_dbus.daemon.reconcile import Policy, Reconciler, own_state
from op_dbus.endpoints import Endpoints
from op_dbus.engine import host as host_module
from op_dbus.engine.host import Host
from op_dbus.engine.options import ApplyOptions
from op_dbus.errors import OpError
from op_dbus.exitcodes import ExitCode

DESIRED = {"net": {"items": {"a": "net-a2"}}}


DATA_DIR: list[str] = []


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, tmp_path) -> World:
    """The backends; the Host's plugins (and those it renews) are in-memory ones."""
    world = World()
    monkeypatch.setattr(host_module, "make_plugin", lambda name, _: world.plugins()[name])
    DATA_DIR[:] = [str(tmp_path)]
    return world


def fresh(policy: Policy = Policy.ENFORCE) -> Reconciler:
    host = Host(Endpoints(data_dir=DATA_DIR[0]), ("systemd", "net", "lxc"), use_ledger=False)
    return Reconciler(host, policy)


async def reconciler(world: World, policy: Policy) -> Reconciler:
    r = fresh(policy)
    change = await r.apply_desired(DESIRED, own_state("test", "standalone"))
    assert change.result.exit_code == ExitCode.OK
    return r


async def cached(r: Reconciler) -> dict:
    """The sections QueryState would answer with."""
    return (await r.cached_state())["state"]["plugins"]


def drift(world: World) -> None:
    world.stores["net"].data["a"] = "someone-else"


async def test_enforce_repairs_drift_and_reports_it(world: World) -> None:
    r = await reconciler(world, Policy.ENFORCE)
    reports: list[tuple[str, dict]] = []
    r.listeners.append(lambda kind, report: reports.append((kind, report)))
    assert await r.check({"net"}, mode="standalone") is None, "no drift, no report"
    drift(world)
    report = await r.check({"net"}, mode="standalone")
    assert report is not None and report["result"]["exit_code"] == 0
    assert world.stores["net"].data["a"] == "net-a2"
    assert r.drift_events == 1 and r.last_apply["actor"] == "op-dbus-daemon:corrective"
    assert [kind for kind, _ in reports] == ["drift", "applied"]
    assert (await cached(r))["net"]["items"]["a"] == "net-a2", "the cache follows the repair"


async def test_observe_only_reports(world: World) -> None:
    r = await reconciler(world, Policy.OBSERVE)
    drift(world)
    report = await r.check({"net", "systemd"}, mode="standalone")
    assert report is not None and "result" not in report
    assert report["actions"][0]["resource"] == "a"
    assert world.stores["net"].data["a"] == "someone-else"
    assert (await cached(r))["net"]["items"]["a"] == "someone-else"
    assert "systemd" in await cached(r), "an undeclared section is still read for the cache"


async def test_a_fight_ends_in_backoff_not_a_hot_loop(world: World) -> None:
    r = await reconciler(world, Policy.ENFORCE)
    applies = world.count("apply")["net"]
    for _ in range(3):
        drift(world)
        await r.check({"net"}, mode="standalone")
    assert r.retry_after == 1.0, "the third repair within a minute imposes a hold"
    drift(world)
    report = await r.check({"net"}, mode="standalone")
    assert report is not None and "net:a" in report["held"] and "result" not in report
    assert world.stores["net"].data["a"] == "someone-else", "held: left alone"
    assert world.count("apply")["net"] == applies + 3


async def test_drift_recurring_during_a_repair_is_new_drift_not_a_rollback(world: World) -> None:
    r = await reconciler(world, Policy.ENFORCE)
    drift(world)
    world.faults.mangle = {("net", "a"): "someone-else"}  # changed back before verify
    report = await r.check({"net"}, mode="standalone")
    assert report is not None and report["result"]["exit_code"] == ExitCode.CHANGES_PENDING
    assert report["result"]["rolled_back"] == []
    assert r.retry_after == 0.0, "checked again at once"
    world.faults.mangle = {}
    report = await r.check({"net"}, mode="standalone")
    assert report is not None and report["result"]["exit_code"] == ExitCode.OK
    assert world.stores["net"].data["a"] == "net-a2"


async def test_try_rolls_back_unless_confirmed(world: World) -> None:
    r = await reconciler(world, Policy.ENFORCE)
    host = r.host
    before = world.snapshot()["net"]
    tried = {"net": {"items": {"a": "tried", "n": "new"}}}
    change = await host.apply(tried, ApplyOptions("try", "standalone", confirm_within=60))
    assert change.result.exit_code == ExitCode.OK and host.pending
    assert world.stores["net"].data["n"] == "new"
    host.confirm(actor="admin")
    assert host.pending is None
    with pytest.raises(OpError, match="nothing to confirm"):
        host.confirm(actor="admin")
    assert world.stores["net"].data["a"] == "tried"

    ended: list[str] = []
    host.try_listeners.append(lambda how, _try, _change: ended.append(how))
    second = {"net": {"items": {"a": "second"}}}
    await host.apply(second, ApplyOptions("try", "s", confirm_within=1))
    assert world.stores["net"].data["a"] == "second"
    await asyncio.wait_for(host.try_ended.wait(), 5)
    assert ended == ["rolled_back"]
    assert world.stores["net"].data["a"] == "tried", "back to the state before the second try"
    assert before != world.snapshot()["net"]


async def test_a_second_try_started_meanwhile_is_refused(world: World) -> None:
    r = await reconciler(world, Policy.ENFORCE)
    host = r.host
    applies = world.count("apply")["net"]
    first, second = await asyncio.gather(
        host.apply({"net": {"items": {"a": "one"}}}, ApplyOptions("t", "s", confirm_within=60)),
        host.apply({"net": {"items": {"a": "two"}}}, ApplyOptions("t", "s", confirm_within=60)),
        return_exceptions=True,
    )
    assert not isinstance(first, BaseException) and first.result.exit_code == ExitCode.OK
    assert isinstance(second, OpError) and "another try is waiting" in second.message
    assert world.stores["net"].data["a"] == "one" and world.count("apply")["net"] == applies + 1
    pending = host.pending
    assert pending is not None and 58 <= pending.to_json()["seconds_left"] <= 60
    deadline = pending.to_json()["deadline"]
    assert f"rolled back at {deadline}" in second.message, "the first try's deadline"
    assert "refused, nothing applied" in second.message
    await host.close()
    assert world.stores["net"].data["a"] == "net-a2", "closing rolls the one try back"


async def test_a_try_on_a_broken_backend_is_refused_like_an_apply(world: World) -> None:
    r = await reconciler(world, Policy.ENFORCE)
    world.faults.query_error = {"lxc"}
    tried = {"lxc": {"items": {"c": "new"}}}
    change = await r.host.apply(tried, ApplyOptions("t", "full", confirm_within=60))
    assert change.result.exit_code == ExitCode.COMPONENT_MISSING and r.host.pending is None
    assert world.count("apply")["lxc"] == 0


async def test_try_seconds_are_bounded(world: World) -> None:
    r = await reconciler(world, Policy.ENFORCE)
    for seconds in (0, 24 * 3600 + 1, 4294967295):
        with pytest.raises(OpError, match="confirm_within must be from 1 to 86400"):
            await r.host.apply(DESIRED, ApplyOptions("t", "s", confirm_within=seconds))


async def test_a_no_op_apply_on_a_fresh_reconciler_still_serves_every_section(
    world: World,
) -> None:
    world.stores["net"].data = {"a": "net-a2"}
    world.faults.unavailable = {"lxc"}
    r = fresh()
    change = await r.apply_desired(DESIRED, own_state("boot", "standalone"))
    assert change.result.exit_code == ExitCode.OK and not change.result.applied
    state = await r.cached_state()
    assert set(state["state"]["plugins"]) == {"systemd", "net"}
    assert state["skipped"] == {"lxc": "lxc backend socket missing"}
    reads = world.count("query")
    await r.cached_state()
    assert world.count("query") == reads, "read once, then served from the cache"


async def test_a_partial_read_goes_stale_and_is_read_in_full_once(world: World) -> None:
    world.partial = {"net"}
    world.stores["net"].data["foreign"] = "theirs"
    r = await reconciler(world, Policy.ENFORCE)
    await r.cached_state()
    assert await r.check({"net"}, mode="standalone") is None
    assert r.stale == {"net"}, "the check read the declared part only"
    reads = world.count("query")["net"]
    assert (await cached(r))["net"]["items"]["foreign"] == "theirs", "read in full"
    assert world.count("query")["net"] == reads + 1 and not r.stale
    await r.cached_state()
    assert world.count("query")["net"] == reads + 1


async def test_a_full_read_by_a_check_is_cached_and_not_read_again(world: World) -> None:
    r = await reconciler(world, Policy.ENFORCE)
    assert "net" in r.stale, "the apply touched it"
    assert await r.check({"net"}, mode="standalone") is None
    reads = world.count("query")["net"]
    assert (await cached(r))["net"]["items"]["a"] == "net-a2"
    assert world.count("query")["net"] == reads, "the check's read was a full one"


async def test_a_section_the_check_cannot_read_is_skipped_with_its_reason(world: World) -> None:
    r = await reconciler(world, Policy.ENFORCE)
    await r.cached_state()
    world.faults.query_error = {"net"}
    reads = world.count("query")["net"]
    assert await r.check({"net"}, mode="standalone") is None
    assert world.count("query")["net"] == reads + 1, "a backend that just failed is not asked again"
    state = await r.cached_state()
    assert "net" not in state["state"]["plugins"]
    assert state["skipped"] == {"net": "query failed: net backend down"}
    assert world.count("query")["net"] == reads + 1


async def test_a_refused_plan_is_not_taken_for_an_unreadable_section(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    from memstore import MemNet

    from op_dbus.errors import Refused

    async def refuse(self: MemNet, current: dict, desired: dict, document: dict) -> None:
        raise Refused("bridge/x", "the host rules it out")

    r = await reconciler(world, Policy.ENFORCE)
    monkeypatch.setattr(MemNet, "check", refuse)
    change = await r.apply_desired(DESIRED, own_state("test", "standalone"))
    assert change.plan.refused and change.result.exit_code == ExitCode.INVALID_INPUT
    state = await r.cached_state()
    assert "net" in state["state"]["plugins"] and state["skipped"] == {}
