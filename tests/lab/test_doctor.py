"""`op-dbus doctor` for real: against the lab, and against private peers for the failure cases."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from native_fixtures import private_ovs, private_system_bus

from op_dbus.doctor import Status, run_doctor
from op_dbus.endpoints import Endpoints
from op_dbus.exitcodes import ExitCode
from op_dbus.lab import Lab, run_in_lab
from op_dbus.model.modes import Mode

pytestmark = pytest.mark.lab

DOCTOR_FULL_JSON = (sys.executable, "-m", "op_dbus", "doctor", "--mode", "full", "--json")


def doctor_in_lab(lab: Lab) -> tuple[int, dict[str, dict]]:
    done = run_in_lab(lab, *DOCTOR_FULL_JSON, check=False)
    report = json.loads(done.stdout)
    assert report["exit_code"] == done.returncode, done.stderr
    return done.returncode, {c["key"]: c for c in report["components"]}


def test_full_mode_against_the_lab_is_green(lab: Lab) -> None:
    code, rows = doctor_in_lab(lab)
    required = {key: row for key, row in rows.items() if row["need"] == "required"}
    assert set(required) == {"dbus", "systemd", "openvswitch", "lxc"}
    assert {key: row["status"] for key, row in required.items()} == dict.fromkeys(required, "ok")
    assert code == ExitCode.OK
    assert "SystemState=" in rows["systemd"]["detail"]
    assert "netdev" in rows["openvswitch"]["detail"]
    assert lab.env()["OPDBUS_LXC_PATH"] in rows["lxc"]["detail"]


def test_ovs_stopped_is_reported_missing(lab: Lab) -> None:
    lab.stop_ovs()
    try:
        code, rows = doctor_in_lab(lab)
    finally:
        lab.start_ovs()
    assert code == ExitCode.COMPONENT_MISSING
    assert rows["openvswitch"]["status"] == "missing"
    assert "cannot connect" in rows["openvswitch"]["detail"]
    assert rows["systemd"]["status"] == "ok"  # only what is down is blamed


@pytest.fixture
def peers() -> Iterator[tuple[Endpoints, object]]:
    """OVS (with vswitchd) and a plain system bus without systemd: private, no lab needed."""
    with private_ovs(vswitchd=True) as ovs, private_system_bus() as bus:
        endpoints = Endpoints(
            ovsdb=ovs.target,
            system_bus=bus.address,
            ovs_rundir=str(ovs.dir),
            lxc_path="/nonexistent/x",
        )
        yield endpoints, ovs


async def test_bus_without_systemd_is_missing_systemd(peers) -> None:
    endpoints, _ = peers
    report = await run_doctor(Mode.STANDALONE, endpoints)
    rows = {c.key: c for c in report.components}
    assert rows["dbus"].status is Status.OK
    assert rows["openvswitch"].status is Status.OK
    assert rows["systemd"].status is Status.MISSING
    assert "org.freedesktop.systemd1" in rows["systemd"].detail
    assert report.exit_code == ExitCode.COMPONENT_MISSING


async def test_ovsdb_without_vswitchd_is_missing(peers) -> None:
    endpoints, ovs = peers
    ovs.vswitchd.terminate()
    ovs.vswitchd.wait(5)
    report = await run_doctor(Mode.STANDALONE, endpoints)
    row = next(c for c in report.components if c.key == "openvswitch")
    assert row.status is Status.MISSING
    assert "ovs-vswitchd not running" in row.detail


async def test_silent_sockets_do_not_hang_the_doctor() -> None:
    """Sockets that accept but never answer: every check gives up after its timeout."""
    with tempfile.TemporaryDirectory(prefix="opdbus-doc-") as name:
        silent = []
        for sock_name in ("bus", "db"):
            listener = socket.socket(socket.AF_UNIX)
            listener.bind(str(Path(name) / sock_name))
            listener.listen(8)
            silent.append(listener)
        endpoints = Endpoints(
            ovsdb=f"unix:{name}/db", system_bus=f"unix:path={name}/bus", ovs_rundir=name
        )
        started = time.monotonic()
        try:
            report = await asyncio.wait_for(run_doctor(Mode.FULL, endpoints, timeout=0.5), 10)
        finally:
            for listener in silent:
                listener.close()
    assert time.monotonic() - started < 3
    rows = {c.key: c for c in report.components}
    assert rows["dbus"].status is Status.MISSING
    assert rows["openvswitch"].status is Status.MISSING
    assert "no answer" in rows["openvswitch"].detail
    assert report.exit_code == ExitCode.COMPONENT_MISSING
