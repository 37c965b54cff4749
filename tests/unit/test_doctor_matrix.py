"""The doctor's matrix logic: what each mode needs, statuses, exit code, JSON. No services."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import typer

from op_dbus.cli.doctor import print_report, resolve_mode
from op_dbus.doctor import (
    COMPONENTS,
    Finding,
    Need,
    Status,
    build_report,
    cgroup_versions,
    status_for,
    vswitchd_pid,
)
from op_dbus.exitcodes import ExitCode
from op_dbus.model.modes import Mode

REQ, OPT, NOT = Need.REQUIRED, Need.OPTIONAL, Need.NOT_USED

# The seed's "Dependency Matrix by Mode", transcribed: (agent, standalone, full).
SEED_MATRIX = {
    "D-Bus": (REQ, REQ, REQ),
    "systemd": (REQ, REQ, REQ),
    "Open vSwitch": (NOT, REQ, REQ),
    "LXC": (NOT, NOT, REQ),
    "Proxmox VE": (NOT, NOT, OPT),
    "PackageKit": (OPT, OPT, OPT),
    "Netmaker": (NOT, NOT, OPT),
}

ALL_OK = {c.key: Finding(True, f"{c.key} fine") for c in COMPONENTS}


def findings(**broken: str) -> dict[str, Finding]:
    return {**ALL_OK, **{key: Finding(False, why) for key, why in broken.items()}}


def test_matrix_is_the_seeds() -> None:
    ours = {
        c.name: (c.needs[Mode.AGENT], c.needs[Mode.STANDALONE], c.needs[Mode.FULL])
        for c in COMPONENTS
    }
    assert ours == SEED_MATRIX


@pytest.mark.parametrize(
    ("need", "finding", "status"),
    [
        (REQ, Finding(True, ""), Status.OK),
        (REQ, Finding(False, ""), Status.MISSING),
        (REQ, None, Status.MISSING),
        (OPT, Finding(True, ""), Status.OK),
        (OPT, Finding(False, ""), Status.OPTIONAL_MISSING),
        (NOT, Finding(False, ""), Status.NOT_USED),
        (NOT, Finding(True, ""), Status.NOT_USED),
    ],
)
def test_status_for(need: Need, finding: Finding | None, status: Status) -> None:
    assert status_for(need, finding) is status


@pytest.mark.parametrize("mode", list(Mode))
def test_everything_present_exits_0(mode: Mode) -> None:
    report = build_report(mode, ALL_OK)
    assert report.exit_code == ExitCode.OK
    assert report.needs_fixing() == []


@pytest.mark.parametrize(
    ("mode", "broken", "exit_code"),
    [
        (Mode.AGENT, "dbus", ExitCode.COMPONENT_MISSING),
        (Mode.AGENT, "systemd", ExitCode.COMPONENT_MISSING),
        (Mode.AGENT, "openvswitch", ExitCode.OK),
        (Mode.AGENT, "lxc", ExitCode.OK),
        (Mode.STANDALONE, "openvswitch", ExitCode.COMPONENT_MISSING),
        (Mode.STANDALONE, "lxc", ExitCode.OK),
        (Mode.FULL, "lxc", ExitCode.COMPONENT_MISSING),
        (Mode.FULL, "openvswitch", ExitCode.COMPONENT_MISSING),
        (Mode.FULL, "proxmox", ExitCode.OK),
        (Mode.FULL, "packagekit", ExitCode.OK),
        (Mode.FULL, "netmaker", ExitCode.OK),
    ],
)
def test_exit_code_follows_the_mode(mode: Mode, broken: str, exit_code: ExitCode) -> None:
    report = build_report(mode, findings(**{broken: "it is gone"}))
    assert report.exit_code == exit_code
    row = next(c for c in report.components if c.key == broken)
    if row.need is Need.NOT_USED:
        assert row.status is Status.NOT_USED
        assert row.detail == f"not used in {mode} mode"
    else:
        assert row.detail == "it is gone"
        assert row in report.needs_fixing()


def test_unprobed_required_component_is_missing() -> None:
    report = build_report(Mode.AGENT, {"dbus": Finding(True, "bus")})
    assert report.exit_code == ExitCode.COMPONENT_MISSING
    systemd = next(c for c in report.components if c.key == "systemd")
    assert (systemd.status, systemd.detail) == (Status.MISSING, "not checked")


def test_needs_fixing_lists_required_before_optional() -> None:
    report = build_report(Mode.FULL, findings(netmaker="no", lxc="no", proxmox="no"))
    assert [c.key for c in report.needs_fixing()] == ["lxc", "proxmox", "netmaker"]


def test_to_json() -> None:
    report = build_report(Mode.STANDALONE, findings(openvswitch="ovsdb-server not answering"))
    data = json.loads(report.to_json())
    assert data["mode"] == "standalone"
    assert data["exit_code"] == 6
    ovs = next(c for c in data["components"] if c["key"] == "openvswitch")
    assert ovs == {
        "key": "openvswitch",
        "name": "Open vSwitch",
        "need": "required",
        "status": "missing",
        "detail": "ovsdb-server not answering",
        "why": ovs["why"],
        "fix_debian": ovs["fix_debian"],
        "fix_nixos": ovs["fix_nixos"],
    }
    assert ovs["fix_nixos"].startswith("virtualisation.vswitch.enable = true;")
    assert "openvswitch-switch" in ovs["fix_debian"]


def test_fixes_name_the_seeds_packages_and_options() -> None:
    by_key = {c.key: c for c in COMPONENTS}
    assert "openvswitch-switch" in by_key["openvswitch"].fix_debian
    assert "lxc" in by_key["lxc"].fix_debian.split()
    assert "dbus" in by_key["dbus"].fix_debian.split()
    assert "virtualisation.vswitch.enable = true;" in by_key["openvswitch"].fix_nixos
    assert "virtualisation.lxc.enable = true;" in by_key["lxc"].fix_nixos
    assert "services.dbus.enable = true;" in by_key["dbus"].fix_nixos
    assert all(c.why and c.fix_debian and c.fix_nixos for c in COMPONENTS)


@pytest.mark.parametrize(
    ("option", "global_mode", "expected"),
    [
        ("agent", "full", Mode.AGENT),
        ("auto", "standalone", Mode.STANDALONE),
        ("auto", Mode.AGENT, Mode.AGENT),
        ("auto", "auto", Mode.FULL),
        ("auto", None, Mode.FULL),
    ],
)
def test_resolve_mode(option: str, global_mode: object, expected: Mode) -> None:
    assert resolve_mode(option, global_mode) is expected


def test_resolve_mode_refuses_unknown() -> None:
    with pytest.raises(typer.BadParameter, match="'proxmox'"):
        resolve_mode("proxmox")


def test_cgroup_versions() -> None:
    hybrid = (
        "tmpfs /sys/fs/cgroup tmpfs rw 0 0\n"
        "cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n"
        "cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n"
    )
    assert cgroup_versions(hybrid) == ["v1", "v2"]
    assert cgroup_versions("cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n") == ["v2"]
    assert cgroup_versions("proc /proc proc rw 0 0\n") == []


def test_vswitchd_pid_refuses_missing_and_stale_pidfiles(tmp_path: Path) -> None:
    pid, why = vswitchd_pid(tmp_path)
    assert pid is None and "no pidfile" in why
    (tmp_path / "ovs-vswitchd.pid").write_text(f"{os.getpid()}\n")  # alive, but not vswitchd
    pid, why = vswitchd_pid(tmp_path)
    assert pid is None and "stale pidfile" in why
    (tmp_path / "ovs-vswitchd.pid").write_text("4194399\n")  # above any pid_max default
    pid, why = vswitchd_pid(tmp_path)
    assert pid is None and "no process" in why


def test_human_output_shows_details_verbatim_and_fixes(capsys: pytest.CaptureFixture[str]) -> None:
    report = build_report(Mode.FULL, findings(lxc="[/] [Errno 2] no such file", proxmox="no pct"))
    print_report(report)
    out = capsys.readouterr().out
    assert "[Errno 2]" in out  # not swallowed as rich markup
    assert "virtualisation.lxc.enable = true;" in out
    assert "apt-get install lxc lxcfs" in out
    assert out.index("LXC (required") < out.index("Proxmox VE (optional")
    assert "Missing for full mode: LXC" in out
