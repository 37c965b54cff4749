"""apply_plan: checkpoint, ordered batches, verify with retries, rollback and its failures."""

from __future__ import annotations

import pytest
from memstore import NAMES, World

from op_dbus.engine.apply import ApplyResult, ProgressEvent, ProgressKind, apply_plan
from op_dbus.engine.order import schedule
from op_dbus.engine.plan import make_plan
from op_dbus.exitcodes import ExitCode
from op_dbus.plugins.base import Action, ActionKind, Mismatch

# Per plugin: modify a, delete b (owned), create c; f is foreign and must survive everything.
DESIRED = {n: {"items": {"a": f"{n}-a2", "b": None, "c": f"{n}-c"}} for n in NAMES}
ACTIONS_PER_PLUGIN = 3
TOTAL_ACTIONS = ACTIONS_PER_PLUGIN * len(NAMES)
NET_POSITIONS = range(3, 6)  # schedule: systemd c,m | lxc d | net d,c,m | lxc c,m | systemd d


def new_world() -> World:
    world = World()
    for name, store in world.stores.items():
        store.data = {"a": f"{name}-a", "b": f"{name}-b", "f": f"{name}-foreign"}
        store.owned = {"a", "b"}
    return world


async def run(world: World, desired=DESIRED, **kwargs) -> tuple[ApplyResult, list[Action]]:
    plugins = world.plugins()
    plan = await make_plan(desired, plugins)
    flat = [a for batch in schedule(plan) for a in batch.actions]
    kwargs.setdefault("verify_delay", 0)
    return await apply_plan(plan, plugins, **kwargs), flat


def converged() -> dict[str, tuple[dict, set]]:
    return {n: ({"a": f"{n}-a2", "c": f"{n}-c", "f": f"{n}-foreign"}, {"a", "c"}) for n in NAMES}


async def test_apply_converges_and_reports_progress() -> None:
    world = new_world()
    events: list[ProgressEvent] = []
    result, flat = await run(world, on_progress=events.append)
    assert result.exit_code == ExitCode.OK
    assert result.applied == flat
    assert (result.failed, result.error, result.mismatches, result.rollback_left) == (
        None,
        None,
        {},
        {},
    )
    assert result.message == "applied 9 action(s), verified"
    assert world.snapshot() == converged()
    batches = [(e.plugin, e.detail) for e in events if e.kind == ProgressKind.BATCH]
    assert batches == [("systemd", "2"), ("lxc", "1"), ("net", "3"), ("lxc", "2"), ("systemd", "1")]
    assert [e.action for e in events if e.kind == ProgressKind.ACTION] == flat
    verify = [(e.plugin, e.detail) for e in events if e.kind == ProgressKind.VERIFY]
    assert verify[3:] == [(n, "0 mismatches") for n in NAMES]
    assert not any(e.rollback for e in events)


async def test_second_apply_is_idempotent() -> None:
    world = new_world()
    first, _ = await run(world)
    assert first.exit_code == ExitCode.OK
    world.calls.clear()
    second, flat = await run(world)
    assert flat == []
    assert (second.exit_code, second.applied) == (ExitCode.OK, [])
    assert world.count("apply") == {}
    assert world.count("verify") == {}
    assert world.snapshot() == converged()


@pytest.mark.parametrize("partial", [False, True], ids=["clean", "partial"])
@pytest.mark.parametrize("position", range(TOTAL_ACTIONS))
async def test_failure_at_every_position_rolls_back_exactly(position: int, partial: bool) -> None:
    world = new_world()
    before = world.snapshot()
    world.faults.fail_at, world.faults.partial = position, partial
    result, flat = await run(world)

    assert len(flat) == TOTAL_ACTIONS
    assert result.exit_code == ExitCode.ROLLED_BACK
    assert world.snapshot() == before
    assert result.failed == flat[position]
    assert result.error == "injected failure"
    # net is atomic: a failure inside its batch leaves none of it applied.
    done = NET_POSITIONS.start if position in NET_POSITIONS else position
    assert result.applied == flat[:done]
    assert result.rollback_left == {}
    assert f"{flat[position].describe()}: injected failure" in result.message
    assert "rolled back, the host is as before" in result.message
    # Plugins after the failing batch were never applied to, not even by the rollback.
    reached = {a.plugin for a in flat[: position + 1]}
    assert set(world.count("apply")) <= reached
    assert world.count("verify") == {}


async def test_unexpected_exception_in_apply_rolls_back() -> None:
    world = new_world()
    before = world.snapshot()
    plugins = world.plugins()

    async def explode(actions: list[Action], steps: object = None) -> list[Action]:
        raise RuntimeError("socket closed")

    plugins["lxc"].apply = explode  # type: ignore[method-assign]
    plan = await make_plan(DESIRED, plugins)
    result = await apply_plan(plan, plugins, verify_delay=0)
    assert result.exit_code == ExitCode.ROLLED_BACK
    assert (result.failed, result.error) == (None, "lxc apply failed: socket closed")
    assert world.snapshot() == before


async def test_rollback_apply_raising_is_rollback_failed_and_names_what_is_left() -> None:
    world = new_world()
    before = world.snapshot()
    world.faults.fail_at = 6  # lxc create c, after the net batch succeeded
    world.faults.apply_down = {"net"}
    result, flat = await run(world)
    assert flat[6] == Action("lxc", ActionKind.CREATE, "c", None, "lxc-c")

    assert result.exit_code == ExitCode.ROLLBACK_FAILED
    left = [
        Action("net", ActionKind.DELETE, "c", "net-c", None),
        Action("net", ActionKind.CREATE, "b", None, "net-b"),
        Action("net", ActionKind.MODIFY, "a", "net-a2", "net-a"),
    ]
    assert result.rollback_left == {"net": left}
    assert "Left to restore the checkpoint: net: delete net:c, create net:b, modify net:a" in (
        result.message
    )
    assert "rollback error: net: net backend down" in result.message
    # The other plugins were still restored, the net store is as the failed apply left it.
    after = world.snapshot()
    assert {n: after[n] for n in ("systemd", "lxc")} == {n: before[n] for n in ("systemd", "lxc")}
    assert after["net"] == converged()["net"]


async def test_rollback_whose_backend_reports_late_is_restored_once_it_settles() -> None:
    world = new_world()
    before = world.snapshot()
    world.faults.fail_at = 6
    world.faults.read_lag = {"net": 2}  # the two re-reads after the rollback see the old rows
    result, _ = await run(world)
    assert result.exit_code == ExitCode.ROLLED_BACK, result.message
    assert result.rollback_left == {}
    assert world.faults.read_lag == {"net": 0}
    assert world.snapshot() == before


async def test_rollback_query_failing_is_reported_as_left() -> None:
    world = new_world()
    world.faults.fail_at = 6
    world.faults.query_down = {"lxc"}
    result, _ = await run(world)
    assert result.exit_code == ExitCode.ROLLBACK_FAILED
    assert result.rollback_left == {"lxc": "query failed: lxc backend down"}
    assert "lxc: query failed: lxc backend down" in result.message


async def test_rollback_that_silently_leaves_a_difference_is_rollback_failed() -> None:
    world = new_world()
    world.faults.fail_at = 6
    world.faults.undeletable = {("net", "c")}
    result, _ = await run(world)
    assert result.exit_code == ExitCode.ROLLBACK_FAILED
    assert result.rollback_left == {"net": [Action("net", ActionKind.DELETE, "c", "net-c", None)]}
    assert "Left to restore the checkpoint: net: delete net:c" in result.message
    assert "rollback error" not in result.message
    assert Action("net", ActionKind.DELETE, "c", "net-c", None) in result.rolled_back


async def test_persistent_verify_mismatch_rolls_back_after_bounded_retries() -> None:
    world = new_world()
    before = world.snapshot()
    world.faults.mangle = {("lxc", "c"): "garbled"}
    result, flat = await run(world, verify_attempts=3)
    assert result.exit_code == ExitCode.ROLLED_BACK
    assert result.applied == flat
    assert result.failed is None
    assert result.mismatches == {"lxc": [Mismatch("c", "value", "lxc-c", "garbled")]}
    assert world.count("verify") == {"systemd": 1, "net": 1, "lxc": 3}
    assert world.snapshot() == before
    assert "verify failed after 3 attempt(s): lxc c: value is 'garbled', expected 'lxc-c'" in (
        result.message
    )


async def test_a_repair_whose_verify_finds_new_changes_stands_and_asks_for_a_new_plan() -> None:
    """The daemon's repair: another actor changed `c` again before verify. What the repair
    did is kept (no rollback), verified once, and reported as still pending (exit 3)."""
    world = new_world()
    world.faults.mangle = {("lxc", "c"): "garbled"}
    result, flat = await run(world, verify_attempts=1, repair=True)
    assert result.exit_code == ExitCode.CHANGES_PENDING
    assert (result.applied, result.rolled_back, result.rollback_left) == (flat, [], {})
    assert world.count("verify") == {"systemd": 1, "net": 1, "lxc": 1}
    assert world.stores["net"].data == converged()["net"][0], "nothing was undone"
    assert "planning anew" in result.message and "garbled" in result.message


async def test_a_repair_whose_action_fails_still_rolls_back() -> None:
    world = new_world()
    before = world.snapshot()
    world.faults.fail_at = 2
    result, _ = await run(world, repair=True)
    assert result.exit_code == ExitCode.ROLLED_BACK
    assert world.snapshot() == before


async def test_mismatch_that_settles_within_the_attempts_succeeds() -> None:
    world = new_world()
    world.faults.verify_lag = {"net": 2}
    result, _ = await run(world, verify_attempts=5, verify_delay=0.05)
    assert result.exit_code == ExitCode.OK
    assert world.count("verify") == {"systemd": 1, "net": 3, "lxc": 1}
    assert world.snapshot() == converged()


async def test_mismatch_that_settles_too_late_rolls_back() -> None:
    world = new_world()
    before = world.snapshot()
    world.faults.verify_lag = {"net": 2}
    result, _ = await run(world, verify_attempts=2)
    assert result.exit_code == ExitCode.ROLLED_BACK
    assert world.count("verify")["net"] == 2
    assert world.snapshot() == before


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"unavailable": "net"}, "net: net backend socket missing"),
        (
            {"query_error": "systemd"},
            "systemd: query failed: systemd backend down",
        ),
    ],
)
async def test_apply_refuses_when_a_section_is_not_ready(change: dict, reason: str) -> None:
    world = new_world()
    before = world.snapshot()
    plugins = world.plugins()
    world.faults.unavailable = {change.get("unavailable", "")}
    world.faults.query_error = {change.get("query_error", "")}
    plan = await make_plan(DESIRED, plugins)
    assert plan.pending
    result = await apply_plan(plan, plugins)
    assert result.exit_code == ExitCode.COMPONENT_MISSING
    assert result.message == f"refusing to apply, nothing changed: {reason}"
    assert result.applied == []
    assert world.count("apply") == {}
    assert world.snapshot() == before


async def test_rollback_runs_in_dependency_order() -> None:
    """Undoing runs like any plan: containers leave before bridges go, units come back first."""
    world = new_world()
    world.faults.fail_at = TOTAL_ACTIONS - 1  # the last action: systemd delete b
    events: list[ProgressEvent] = []
    result, _ = await run(world, on_progress=events.append)
    assert result.exit_code == ExitCode.ROLLED_BACK
    undo = [(e.plugin, e.detail) for e in events if e.kind == ProgressKind.BATCH and e.rollback]
    assert undo == [("systemd", "1"), ("lxc", "1"), ("net", "3"), ("lxc", "2"), ("systemd", "1")]
    assert [a.describe() for a in result.rolled_back] == [
        "modify systemd:a",
        "delete lxc:c",
        "delete net:c",
        "create net:b",
        "modify net:a",
        "create lxc:b",
        "modify lxc:a",
        "delete systemd:c",
    ]
    results = [(e.plugin, e.detail) for e in events if e.kind == ProgressKind.ROLLBACK]
    assert results[0] == ("", "delete systemd:b: injected failure")
    assert results[1:] == [(n, "restored") for n in NAMES]


async def test_each_action_is_reported_as_it_starts_and_ends_with_its_time() -> None:
    from op_dbus.engine.apply import ProgressKind

    world = new_world()
    plugins = world.plugins()
    events: list[ProgressEvent] = []
    plan = await make_plan(DESIRED, plugins)
    result = await apply_plan(plan, plugins, verify_delay=0, on_progress=events.append)
    assert result.exit_code == ExitCode.OK
    steps = [(e.kind, e.action.resource) for e in events if e.action is not None]
    expected = []
    for action in result.applied:
        expected += [
            (ProgressKind.STARTED, action.resource),
            (ProgressKind.ACTION, action.resource),
        ]
    assert steps == expected, "each start before its end, one action after another"
    assert len(result.action_seconds) == len(result.applied)
    assert all(t >= 0 for t in result.action_seconds) and result.seconds >= max(
        result.action_seconds
    )
    assert result.to_json()["action_seconds"] and "seconds" in result.to_json()
