"""The reconciler's policy on drift, and try-and-confirm, over the in-memory plugins."""

from __future__ import annotations

import asyncio

import pytest
from memstore import World

from op_dbus.daemon import reconcile
from op_dbus.daemon.reconcile import Policy, Reconciler
from op_dbus.daemon.tryconfirm import TryAndConfirm
from op_dbus.endpoints import Endpoints
from op_dbus.exitcodes import ExitCode
from op_dbus.model import Mode

DESIRED = {"net": {"items": {"a": "net-a2"}}}


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> World:
    """The backends; the reconciler's plugins (and those it renews) are in-memory ones."""
    world = World()
    monkeypatch.setattr(reconcile, "make_plugin", lambda name, _: world.plugins()[name])
    return world


def fresh(policy: Policy = Policy.ENFORCE) -> Reconciler:
    return Reconciler(Endpoints(), Mode.FULL, policy, use_ledger=False)


async def reconciler(world: World, policy: Policy) -> Reconciler:
    r = fresh(policy)
    _, result = await r.apply_desired(DESIRED, mode="standalone", actor="test")
    assert result.exit_code == ExitCode.OK
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


async def test_try_rolls_back_unless_confirmed(world: World) -> None:
    r = await reconciler(world, Policy.ENFORCE)
    tries = TryAndConfirm(r)
    before = world.snapshot()["net"]
    tried = {"net": {"items": {"a": "tried", "n": "new"}}}
    result = await tries.start(tried, 60, mode="standalone", actor="try")
    assert result.exit_code == ExitCode.OK and tries.pending
    assert world.stores["net"].data["n"] == "new"
    assert tries.confirm() and not tries.pending and not tries.confirm()
    assert world.stores["net"].data["a"] == "tried"

    await tries.start({"net": {"items": {"a": "second"}}}, 0.05, mode="standalone", actor="try")
    assert world.stores["net"].data["a"] == "second"
    for _ in range(100):
        if not tries.pending and r.last_apply.get("actor") == "op-dbus-daemon:try-rollback":
            break
        await asyncio.sleep(0.02)
    assert world.stores["net"].data["a"] == "tried", "back to the state before the second try"
    assert r.desired == tried, "and the confirmed state is what is enforced again"
    assert before != world.snapshot()["net"]


async def test_a_second_try_started_meanwhile_is_refused(world: World) -> None:
    r = await reconciler(world, Policy.ENFORCE)
    tries = TryAndConfirm(r)
    applies = world.count("apply")["net"]
    first, second = await asyncio.gather(
        tries.start({"net": {"items": {"a": "one"}}}, 60, mode="standalone", actor="try"),
        tries.start({"net": {"items": {"a": "two"}}}, 60, mode="standalone", actor="try"),
    )
    assert first.exit_code == ExitCode.OK and second.exit_code == ExitCode.INVALID_INPUT
    assert world.stores["net"].data["a"] == "one" and world.count("apply")["net"] == applies + 1
    pending = tries.pending_json()
    assert pending is not None and 58 <= pending["seconds_left"] <= 60
    assert f"rolled back at {pending['deadline']}" in second.message, "the first try's deadline"
    assert "refused, nothing applied" in second.message
    await tries.shutdown()
    assert world.stores["net"].data["a"] == "net-a2", "the one try is rolled back"
    assert r.desired == DESIRED


async def test_a_try_on_a_broken_backend_is_refused_like_an_apply(world: World) -> None:
    r = await reconciler(world, Policy.ENFORCE)
    tries = TryAndConfirm(r)
    world.faults.query_error = {"lxc"}
    tried = {"lxc": {"items": {"c": "new"}}}
    result = await tries.start(tried, 60, mode="full", actor="try")
    assert result.exit_code == ExitCode.COMPONENT_MISSING and not tries.pending
    assert world.count("apply")["lxc"] == 0


async def test_a_no_op_apply_on_a_fresh_reconciler_still_serves_every_section(
    world: World,
) -> None:
    world.stores["net"].data = {"a": "net-a2"}
    world.faults.unavailable = {"lxc"}
    r = fresh()
    _, result = await r.apply_desired(DESIRED, mode="standalone", actor="boot")
    assert result.exit_code == ExitCode.OK and not result.applied
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
    assert state["skipped"] == {"net": "query failed: ConnectionError: net backend down"}
    assert world.count("query")["net"] == reads + 1


async def test_foreground_try_restores_the_checkpoint_unless_confirmed() -> None:
    from op_dbus.cli.daemon import hold_for_confirmation
    from op_dbus.engine.apply import apply_plan
    from op_dbus.engine.plan import make_plan

    world = World()
    world.stores["net"].data = {"a": "old"}
    world.stores["net"].owned = {"a"}
    plugins = world.plugins()
    wanted = {"net": {"items": {"a": "new", "b": "added"}}}

    async def answer(yes: bool) -> bool:
        return yes

    plan = await make_plan(wanted, plugins)
    assert (await apply_plan(plan, plugins, verify_delay=0)).exit_code == ExitCode.OK
    assert await hold_for_confirmation(plugins, plan, 5, lambda s: answer(True)) is None
    assert world.stores["net"].data == {"a": "new", "b": "added"}, "confirmed: kept"

    world.stores["net"].data = {"a": "old"}
    plan = await make_plan(wanted, plugins)
    await apply_plan(plan, plugins, verify_delay=0)
    restored = await hold_for_confirmation(plugins, plan, 5, lambda s: answer(False))
    assert restored is not None and restored[1].exit_code == ExitCode.OK
    assert world.stores["net"].data == {"a": "old"}, "not confirmed: back to the checkpoint"
    assert {a.resource for a in restored[1].applied} == {"a", "b"}
