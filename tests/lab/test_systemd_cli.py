"""The systemd section through the op-dbus CLI in the lab: the seed's entry, drift, exit codes."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import systemd_units as su

from op_dbus.exitcodes import ExitCode
from op_dbus.lab import Lab, run_in_lab

SEED_UNITS = {"openvswitch.service": {"enabled": True, "active_state": "active"}}
"""architecture.md's example state, exactly as written there."""


def state_file(tmp_path: Path, units: dict) -> str:
    path = tmp_path / "state.json"
    path.write_text(json.dumps({"version": 1, "plugins": {"systemd": {"units": units}}}))
    return str(path)


def op_dbus(lab: Lab, *args: str) -> tuple[int, str]:
    done = run_in_lab(lab, sys.executable, "-m", "op_dbus", *args, check=False)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout + done.stderr


@pytest.fixture
async def units(lab: Lab) -> AsyncIterator[None]:
    async with su.installed(lab):
        yield


async def test_seed_openvswitch_entry_applied_as_written(lab: Lab, tmp_path: Path) -> None:
    path = state_file(tmp_path, SEED_UNITS)
    try:
        code, out = op_dbus(lab, "apply", path)
        assert code == ExitCode.OK, out
        assert su.busctl_file_state(lab, "openvswitch.service") == "enabled"
        assert su.busctl_active_state(lab, "openvswitch.service") == "active"
        assert op_dbus(lab, "diff", path)[0] == ExitCode.OK, "re-apply has nothing to do"
    finally:
        await su.reset(lab, ["openvswitch.service"])
    assert su.busctl_file_state(lab, "openvswitch.service") == "disabled"


async def test_drift_shows_in_diff(lab: Lab, tmp_path: Path, units: None) -> None:
    path = state_file(tmp_path, {su.LONG: {"active_state": "active"}})
    assert op_dbus(lab, "apply", path)[0] == ExitCode.OK
    assert op_dbus(lab, "diff", path)[0] == ExitCode.OK
    su.busctl(lab, "call", "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
              "org.freedesktop.systemd1.Manager", "StopUnit", "ss", su.LONG, "replace")  # fmt: skip
    deadline = time.monotonic() + 5
    while su.busctl_active_state(lab, su.LONG) != "inactive" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert su.busctl_active_state(lab, su.LONG) == "inactive"
    code, out = op_dbus(lab, "diff", path)
    assert code == ExitCode.CHANGES_PENDING, out
    assert su.LONG in out and "inactive" in out


async def test_missing_unit_fails_cleanly(lab: Lab, tmp_path: Path, units: None) -> None:
    code, out = op_dbus(
        lab, "apply", state_file(tmp_path, {"opdbus-t-nope.service": {"active_state": "active"}})
    )
    assert code == ExitCode.ROLLED_BACK, out
    assert "opdbus-t-nope.service does not exist" in out
