"""The write-ahead journal and interrupts, over in-memory backends (the lab tests run the real
ones): what is on disk before, during and after a change, who wins a confirm/rollback race,
and that a signal at any action position restores the checkpoint."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from memstore import NAMES, World

from op_dbus.endpoints import Endpoints
from op_dbus.engine.apply import ProgressEvent, ProgressKind, apply_plan
from op_dbus.engine.host import Host
from op_dbus.engine.interrupts import Interrupts
from op_dbus.engine.journal import Journal, JournalError, PendingChange
from op_dbus.engine.options import ApplyOptions
from op_dbus.engine.plan import make_plan
from op_dbus.errors import NothingPending
from op_dbus.exitcodes import ExitCode
from op_dbus.ledger.store import Ledger

DESIRED = {n: {"items": {"a": f"{n}-a2", "b": None, "c": f"{n}-c"}} for n in NAMES}
TOTAL_ACTIONS = 9


def new_world() -> World:
    world = World()
    for name, store in world.stores.items():
        store.data = {"a": f"{name}-a", "b": f"{name}-b"}
        store.owned = {"a", "b"}
    return world


def host_over(world: World, data_dir: Path, **kwargs: Any) -> Host:
    host = Host(Endpoints(data_dir=str(data_dir)), NAMES, **kwargs)
    host.plugins = dict(world.plugins())
    return host


def change(apply_id: str = "ab" * 16, **kwargs: Any) -> PendingChange:
    fields = {"state": "try", "checkpoints": {"net": {"items": {}}}, "actor": "me", "mode": "full"}
    return PendingChange(apply_id, started="2026-01-01T00:00:00Z", **(fields | kwargs))


def values(data_dir: Path) -> list[dict[str, Any]]:
    with Ledger.open(data_dir, readonly=True) as ledger:
        assert ledger.verify().ok
        return [e.value for e in ledger.entries()]


def test_confirm_and_rollback_race_has_one_winner(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    journal.write(change())
    assert journal.remove("ab" * 16) is True  # confirmed first
    assert journal.claim_rollback("ab" * 16) is None
    journal.write(change())
    assert journal.claim_rollback("ab" * 16) is not None  # rolled back first
    assert journal.remove("ab" * 16) is False
    assert [c.state for c in journal.all()] == ["rollback"], "kept until the rollback is done"
    journal.done_rollback("ab" * 16)
    assert journal.all() == []


def test_journal_refuses_names_and_files_that_are_not_its_own(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    with pytest.raises(JournalError):
        journal.get("../ledger")
    journal.dir.mkdir()
    (journal.dir / ("cd" * 16 + ".json")).write_text("{not json")
    with pytest.raises(JournalError):
        journal.all()


async def test_the_checkpoint_is_on_disk_and_the_intent_signed_before_the_first_action(
    tmp_path: Path,
) -> None:
    world = new_world()
    host = host_over(world, tmp_path)
    seen: list[tuple[list[dict[str, Any]], list[str]]] = []

    def at_first_action(event: ProgressEvent) -> None:
        if event.kind == ProgressKind.BATCH and not seen:
            journalled = [json.loads(p.read_text()) for p in (tmp_path / "pending").iterdir()]
            seen.append((journalled, [v["type"] for v in values(tmp_path)]))

    change = await host.apply(DESIRED, ApplyOptions("me", "full"), progress=at_first_action)
    result = change.result
    assert result.exit_code == ExitCode.OK
    ((journalled, types),) = seen
    assert types == ["intent"]
    assert journalled[0]["state"] == "applying"
    assert journalled[0]["checkpoints"]["net"]["items"] == {"a": "net-a", "b": "net-b"}
    recorded = values(tmp_path)
    assert {v["apply_id"] for v in recorded} == {journalled[0]["apply_id"]}
    assert list((tmp_path / "pending").iterdir()) == [], "the result recorded: journal empty"
    await host.close()


async def test_a_try_is_confirmed_from_another_host_and_expired_ones_roll_back(
    tmp_path: Path,
) -> None:
    world = new_world()
    before = world.snapshot()
    maker = host_over(world, tmp_path, keeps_timer=False)
    await maker.apply(DESIRED, ApplyOptions("me", "full", confirm_within=60))
    other = host_over(world, tmp_path)
    kept = other.confirm(actor="uid=0 command=op-dbus confirm")
    assert kept.actor == "me" and Journal(tmp_path).all() == []
    with pytest.raises(NothingPending):
        other.confirm(actor="again")
    confirm = [v for v in values(tmp_path) if v["type"] == "confirm"]
    assert confirm[0]["actor"] == "uid=0 command=op-dbus confirm"
    maker.pending = None  # confirmed elsewhere: nothing of it to roll back on close
    await maker.close()

    undo = {n: {"items": {"a": f"{n}-a", "b": f"{n}-b", "c": None}} for n in NAMES}
    await other.apply(undo, ApplyOptions("me", "full"))
    assert world.snapshot() == before
    await other.apply(DESIRED, ApplyOptions("me", "full", confirm_within=60))
    (waiting,) = Journal(tmp_path).all()
    waiting.deadline = time.time() - 1  # its keeper died with the machine
    Journal(tmp_path).write(waiting)
    other.pending = None
    fresh = host_over(world, tmp_path)
    result = (await fresh.apply({"net": {"items": {}}}, ApplyOptions("me", "full"))).result
    assert "past its deadline" in result.message
    assert world.snapshot() == before and Journal(tmp_path).all() == []
    await fresh.close()


@pytest.mark.parametrize("position", range(TOTAL_ACTIONS))
async def test_a_signal_at_any_action_rolls_back_to_the_checkpoint(position: int) -> None:
    world = new_world()
    before = world.snapshot()
    plugins = world.plugins()
    plan = await make_plan(DESIRED, plugins)
    interrupts = Interrupts()
    count = [0]

    def progress(event: ProgressEvent) -> None:
        if event.kind == ProgressKind.ACTION and not event.rollback:
            if count[0] == position:
                interrupts.hit(signal.SIGINT)
            count[0] += 1

    result = await apply_plan(
        plan, plugins, verify_delay=0, on_progress=progress, interrupts=interrupts
    )
    assert result.exit_code == ExitCode.ROLLED_BACK, result.message
    assert "interrupted by SIGINT" in result.message
    assert world.snapshot() == before


async def test_a_second_signal_stops_the_rollback_and_names_what_is_left() -> None:
    world = new_world()
    plugins = world.plugins()
    plan = await make_plan(DESIRED, plugins)
    interrupts = Interrupts()
    interrupts.hit(signal.SIGINT)
    interrupts.hit(signal.SIGTERM)
    result = await apply_plan(plan, plugins, verify_delay=0, interrupts=interrupts)
    assert result.applied == [] and result.exit_code == ExitCode.ROLLED_BACK, "nothing ran"

    interrupts = Interrupts()

    def progress(event: ProgressEvent) -> None:
        if event.kind == ProgressKind.ACTION and not event.rollback:
            interrupts.hit(signal.SIGINT)  # the first at once, the second right after
            interrupts.hit(signal.SIGINT)

    result = await apply_plan(
        plan, plugins, verify_delay=0, on_progress=progress, interrupts=interrupts
    )
    assert result.exit_code == ExitCode.ROLLBACK_FAILED
    assert "stopped by a second interrupt" in result.message
    assert result.rolled_back == [] and set(result.rollback_left) == {"systemd"}


async def test_a_host_that_keeps_timers_adopts_a_try_whose_timer_died(tmp_path: Path) -> None:
    world = new_world()
    before = world.snapshot()
    maker = host_over(world, tmp_path, keeps_timer=False)
    await maker.apply(DESIRED, ApplyOptions("me", "full", confirm_within=60))
    maker.pending = None  # the maker and its keeper are gone (no keeper log is flocked)
    await maker.close()
    (waiting,) = Journal(tmp_path).all()
    waiting.deadline = time.time() + 1
    Journal(tmp_path).write(waiting)

    daemon = host_over(world, tmp_path)  # keeps_timer: like the daemon's
    await daemon.apply({"net": {"items": {}}}, ApplyOptions("daemon", "full"))
    assert daemon.pending is not None and daemon.pending.apply_id == waiting.apply_id
    await asyncio.wait_for(daemon.try_ended.wait(), 30)
    assert world.snapshot() == before and Journal(tmp_path).all() == []
    recovered = [v for v in values(tmp_path) if v.get("recovers") == waiting.apply_id]
    assert recovered and recovered[0]["actor"] == "me:timeout"
    await daemon.close()
