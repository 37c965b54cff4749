"""The daemon's gate and bounds: per-caller slots, the try window, work kept off the loop,
and the shipped unit not restarting on an invalid state file."""

from __future__ import annotations

import configparser
import json
import shutil
import subprocess
import threading
from pathlib import Path

import pytest
from memstore import World

from op_dbus.daemon.callers import CallerSlots
from op_dbus.daemon.service import Daemon, DaemonOptions
from op_dbus.endpoints import Endpoints
from op_dbus.engine.host import check_try_seconds
from op_dbus.engine.options import ApplyOptions
from op_dbus.engine.plan import make_plan
from op_dbus.errors import Busy, InvalidInput
from op_dbus.limits import TRY_MAX_SECONDS

UNIT = Path(__file__).resolve().parents[2] / "data" / "systemd" / "op-dbus.service"


def test_one_costly_call_per_connection() -> None:
    slots = CallerSlots()
    with slots.connection(":1.5", "Diff"):
        busy = pytest.raises(Busy, match="this connection's Diff call is still being answered")
        with busy, slots.connection(":1.5", "Verify"):
            pass
        with slots.connection(":1.6", "Diff"):
            pass  # another connection is another caller
    with slots.connection(":1.5", "Verify"):
        pass  # the reply went out: the next call is welcome


def test_non_root_callers_share_one_slot_and_a_failure_frees_it() -> None:
    slots = CallerSlots()
    with pytest.raises(RuntimeError), slots.unprivileged("Diff"):
        busy = pytest.raises(Busy, match="non-root caller's Diff call is being answered")
        with busy, slots.unprivileged("Verify"):
            pass
        raise RuntimeError("the handler failed")
    with slots.unprivileged("Verify"):
        pass


@pytest.mark.parametrize(
    ("seconds", "ok"),
    [(0, False), (1, True), (600, True), (TRY_MAX_SECONDS, True), (86401, False),
     (4294967295, False)],
)  # fmt: skip
def test_the_try_window_is_one_second_to_a_day(seconds: int, ok: bool) -> None:
    if ok:
        check_try_seconds(seconds)
        return
    with pytest.raises(InvalidInput, match=f"from 1 to 86400 seconds, got {seconds}"):
        check_try_seconds(seconds)


@pytest.mark.parametrize("seconds", [0, 4294967295])
async def test_try_state_refuses_a_window_out_of_bounds_before_parsing(
    seconds: int, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    daemon = Daemon(DaemonOptions(endpoints=Endpoints(data_dir=str(tmp_path))))
    monkeypatch.setattr(daemon.parser, "parse", lambda *a, **k: pytest.fail("parsed"))
    with pytest.raises(InvalidInput, match="confirm_within must be from 1 to 86400 seconds"):
        await daemon.apply_state('{"version": 1}', ApplyOptions("uid=0", "full", seconds))
    assert daemon.host.pending is None


async def test_a_callers_document_is_parsed_in_a_child_process(tmp_path: Path) -> None:
    daemon = Daemon(DaemonOptions(endpoints=Endpoints(data_dir=str(tmp_path))))
    try:
        with pytest.raises(InvalidInput, match="larger than the limit of 1 MiB"):
            await daemon.diff("#" * (2 << 20))
        with pytest.raises(InvalidInput, match=r"plugins\.net\.interfaces: "):
            await daemon._parse('{"version": 1, "plugins": {"net": {"interfaces": 3}}}')
        units = {"systemd": {"units": {"a.service": {"enabled": True}}}}
        parsed = await daemon._parse(json.dumps({"version": 1, "plugins": units}))
        assert parsed == units
        assert daemon.parser._pool is not None, "it went to the child process"
    finally:
        daemon.parser.close()


async def test_plans_are_diffed_off_the_event_loop() -> None:
    world = World()
    plugins = world.plugins()
    threads: list[threading.Thread] = []
    real = plugins["net"].diff

    def diff(*args: object, **kwargs: object) -> object:
        threads.append(threading.current_thread())
        return real(*args, **kwargs)  # type: ignore[arg-type]

    plugins["net"].diff = diff  # type: ignore[method-assign]
    plan = await make_plan({"net": {"items": {"a": "new"}}}, plugins)
    assert plan.pending and threads and threads[0] is not threading.main_thread()


def test_the_unit_does_not_restart_on_an_invalid_state_file(tmp_path: Path) -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read(UNIT)
    assert unit["Service"]["Restart"] == "on-failure"
    assert "2" in unit["Service"]["RestartPreventExitStatus"].split()
    if shutil.which("systemd-analyze"):  # the unit parses, as systemd reads it
        copy = tmp_path / UNIT.name
        copy.write_text(UNIT.read_text().replace("/usr/bin/op-dbus", "/bin/true"))
        done = subprocess.run(
            ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, check=False
        )
        assert "RestartPreventExitStatus" not in done.stderr, done.stderr
