"""record_intent and record_apply: what one apply writes into the ledger, before the host is
touched and after, for success and for rollback."""

from __future__ import annotations

from pathlib import Path

from memstore import NAMES, World

from op_dbus.engine.apply import apply_plan
from op_dbus.engine.plan import make_plan
from op_dbus.engine.record import (
    MAX_VALUE_BYTES,
    bounded_value,
    command_actor,
    record_apply,
    record_intent,
)
from op_dbus.exitcodes import ExitCode
from op_dbus.ledger.entries import digest
from op_dbus.ledger.store import Ledger

APPLY_ID = "ab" * 16
DESIRED = {n: {"items": {"a": f"{n}-a2", "b": None, "c": f"{n}-c"}} for n in NAMES}


def new_world() -> World:
    world = World()
    for name, store in world.stores.items():
        store.data = {"a": f"{name}-a", "b": f"{name}-b"}
        store.owned = {"a", "b"}
    return world


async def apply_and_record(world: World, data_dir: Path) -> list[dict]:
    plugins = world.plugins()
    plan = await make_plan(DESIRED, plugins)
    actor = command_actor(["op-dbus", "apply", "state.yaml"])
    checkpoints = {e.name: e.current for e in plan.plugins if e.actions}
    with Ledger.open(data_dir) as ledger:
        record_intent(
            ledger, apply_id=APPLY_ID, plan=plan, checkpoints=checkpoints, mode="full", actor=actor
        )
        assert ledger.verify().ok, "the intent is signed on its own, before the host changes"
        result = await apply_plan(plan, plugins, verify_delay=0)
        record_apply(
            ledger,
            plan=plan,
            result=result,
            desired=DESIRED,
            mode="full",
            actor=actor,
            apply_id=APPLY_ID,
        )
        report = ledger.verify()
        assert report.ok and report.checkpoints == 2
        values = [entry.value for entry in ledger.entries()]
    intent = values[0]
    assert intent["type"] == "intent" and intent["apply_id"] == APPLY_ID
    assert intent["checkpoint_digest"] == digest(checkpoints)
    assert intent["actor"] == actor and intent["actions"] == 9
    return values[1:]


async def test_successful_apply_writes_header_and_one_entry_per_action(tmp_path: Path) -> None:
    values = await apply_and_record(new_world(), tmp_path)
    header, actions = values[0], values[1:]
    assert header["type"] == "apply"
    assert header["actor"].endswith("command=op-dbus apply state.yaml")
    assert header["actor"].startswith("uid=")
    assert (header["mode"], header["desired_digest"]) == ("full", digest(DESIRED))
    assert header["result"]["exit_code"] == 0 and header["result"]["applied"] == 9
    assert len(actions) == 9
    assert {a["apply_id"] for a in values} == {header["apply_id"]}
    assert {(a["phase"], a["result"]) for a in actions} == {("apply", "applied")}
    modify = next(a for a in actions if a["plugin"] == "net" and a["kind"] == "modify")
    assert modify["resource"] == "a"
    assert (modify["before_digest"], modify["after_digest"]) == (digest("net-a"), digest("net-a2"))
    assert (modify["before"], modify["after"]) == ("net-a", "net-a2"), "the values themselves"
    delete = next(a for a in actions if a["plugin"] == "net" and a["kind"] == "delete")
    assert delete["after_digest"] is None and delete["after"] is None
    assert delete["before"] == "net-b"
    assert [v["index"] for v in values] == list(range(1, 11))


def test_large_values_are_cut_and_marked() -> None:
    small = {"name": "br0", "ports": ["p"] * 10}
    assert bounded_value(small) == small and bounded_value(None) is None
    large = {"blob": "x" * (MAX_VALUE_BYTES * 2)}
    cut = bounded_value(large)
    assert cut["truncated"] is True and cut["bytes"] > MAX_VALUE_BYTES * 2
    assert len(cut["canonical_prefix"].encode()) <= MAX_VALUE_BYTES
    assert cut["canonical_prefix"].startswith('{"blob":"xxx')


async def test_failed_apply_records_the_failure_and_the_rollback(tmp_path: Path) -> None:
    world = new_world()
    world.faults.fail_at = 6
    values = await apply_and_record(world, tmp_path)
    header = values[0]
    assert header["result"]["exit_code"] == int(ExitCode.ROLLED_BACK)
    assert header["result"]["error"] == "injected failure"
    applied = [v for v in values[1:] if v["phase"] == "apply" and v["result"] == "applied"]
    failed = [v for v in values[1:] if v["result"] == "failed"]
    rollback = [v for v in values[1:] if v["phase"] == "rollback"]
    assert len(applied) == header["result"]["applied"] == 6
    assert len(failed) == 1 and failed[0]["error"] == "injected failure"
    assert len(rollback) == header["result"]["rolled_back"] >= 1
    # Every applied action is undone by a rollback action on the same resource.
    assert {(a["plugin"], a["resource"]) for a in applied} <= {
        (r["plugin"], r["resource"]) for r in rollback
    }
