"""The lab, checked with tools nobody here wrote: ovs-vsctl, busctl, ip, lxc-*."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from op_dbus.lab import Lab, run_in_lab

SYSTEMD = ("org.freedesktop.systemd1", "/org/freedesktop/systemd1")
MANAGER = "org.freedesktop.systemd1.Manager"
LAB_CLI = [sys.executable, "-c", "from op_dbus.cli.lab import lab_app; lab_app()"]


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=60)


def busctl(lab: Lab, *args: str) -> str:
    return run("busctl", f"--address={lab.system_bus}", *args).stdout.strip()


def unit_property(lab: Lab, unit: str, interface: str, prop: str) -> str:
    path = busctl(lab, "call", *SYSTEMD, MANAGER, "LoadUnit", "s", unit).split()[1].strip('"')
    return busctl(lab, "get-property", SYSTEMD[0], path, interface, prop).split()[1].strip('"')


def ip_json(*args: str) -> list[dict]:
    return json.loads(run("ip", "-j", *args).stdout)


def test_ovs_answers_ovs_vsctl(lab: Lab) -> None:
    db = lab.env()["OPDBUS_OVSDB"]
    assert run("ovs-vsctl", f"--db={db}", "show").returncode == 0
    types = run("ovs-vsctl", f"--db={db}", "get", "Open_vSwitch", ".", "datapath_types").stdout
    assert "netdev" in types


def test_ovs_runs_in_lab_netns(lab: Lab) -> None:
    """vswitchd's tap devices must land in the lab netns, never on the host."""
    lab_ns = os.stat(f"/run/netns/{lab.name}").st_ino
    for pid in (lab.ovs.ovsdb_pid, lab.ovs.vswitchd_pid):
        assert os.stat(f"/proc/{pid}/ns/net").st_ino == lab_ns


def test_systemd_is_up_on_the_lab_bus(lab: Lab) -> None:
    state = busctl(lab, "get-property", *SYSTEMD, MANAGER, "SystemState")
    assert state in ('s "running"', 's "degraded"')


def test_netns_pair(lab: Lab) -> None:
    eth0 = ip_json("-n", lab.name, "addr", "show", "dev", "eth0")
    assert eth0[0]["operstate"] != "DOWN"
    inet = [(a["local"], a["prefixlen"]) for a in eth0[0]["addr_info"] if a["family"] == "inet"]
    assert inet in ([("192.168.1.10", 24)], []), "the host's address, or none once bridged"
    upstream = ip_json("-n", lab.upstream_netns, "addr")
    addresses = {a["local"] for link in upstream for a in link["addr_info"]}
    assert "192.168.1.1" in addresses
    host_links = {link["ifname"] for link in ip_json("link")}
    assert "gw0" not in host_links


def test_exec_runs_in_lab_netns_with_env(lab: Lab) -> None:
    result = run_in_lab(lab, "sh", "-c", 'stat -L -c %i /proc/self/ns/net; echo "$OVS_RUNDIR"')
    inode, rundir = result.stdout.split()
    assert int(inode) == os.stat(f"/run/netns/{lab.name}").st_ino
    assert rundir == str(lab.ovs_dir)
    # sysfs is the lab's (eth0 of the lab, not the host's devices) and cgroups stay visible
    listing = run_in_lab(lab, "sh", "-c", "ls /sys/class/net; ls /sys/fs/cgroup").stdout.split()
    assert "eth0" in listing and "lo" in listing and "systemd" in listing
    assert "gw0" not in listing


def test_cli_env_and_exec(lab: Lab) -> None:
    env = json.loads(run(*LAB_CLI, "env", "--name", lab.name, "--json").stdout)
    assert env == lab.env()
    exported = run(*LAB_CLI, "env", "--name", lab.name).stdout
    assert f"export OPDBUS_LAB_NETNS={lab.name}\n" in exported
    code = run(*LAB_CLI, "exec", "--name", lab.name, "--", "sh", "-c", "exit 7", check=False)
    assert code.returncode == 7
    show = run(*LAB_CLI, "exec", "--name", lab.name, "--", "ovs-vsctl", "show")
    assert show.returncode == 0


def test_cli_status_json(lab: Lab) -> None:
    status = json.loads(run(*LAB_CLI, "status", "--name", lab.name, "--json").stdout)
    assert status["up"] is True
    assert status["components"]["ovs-vswitchd"]["pid"] == lab.ovs.vswitchd_pid


def test_lxc_busybox_container_in_lab(lab: Lab) -> None:
    path = str(lab.lxc_path)
    name = "t-busybox"
    run("lxc-create", "-P", path, "-t", "busybox", "-n", name)
    try:
        config = lab.lxc_path / name / "config"
        # no lxcbr0 here: the host end of the veth just sits in the lab netns
        config.write_text(
            "".join(ln for ln in config.read_text().splitlines(True) if "net.0.link" not in ln)
        )
        run_in_lab(lab, "lxc-start", "-P", path, "-n", name, "-d")
        info = run_in_lab(lab, "lxc-info", "-P", path, "-n", name, "-sH").stdout.strip()
        assert info == "RUNNING"
        info_lines = run_in_lab(lab, "lxc-info", "-P", path, "-n", name).stdout.splitlines()
        host_end = next(ln.split()[1] for ln in info_lines if ln.startswith("Link:"))
        assert host_end in {link["ifname"] for link in ip_json("-n", lab.name, "link")}
        assert host_end not in {link["ifname"] for link in ip_json("link")}
        run_in_lab(lab, "lxc-stop", "-k", "-P", path, "-n", name)
        stopped = run_in_lab(lab, "lxc-info", "-P", path, "-n", name, "-sH").stdout.strip()
        assert stopped == "STOPPED"
    finally:
        run_in_lab(lab, "lxc-stop", "-k", "-P", path, "-n", name, check=False)
        run("lxc-destroy", "-P", path, "-n", name, check=False)
    assert not (lab.lxc_path / name).exists()


def test_openvswitch_unit_starts_and_stops(lab: Lab) -> None:
    unit = "openvswitch.service"
    assert unit_property(lab, unit, "org.freedesktop.systemd1.Unit", "LoadState") == "loaded"
    busctl(lab, "call", *SYSTEMD, MANAGER, "StartUnit", "ss", unit, "replace")
    try:
        _wait_for(lambda: unit_property(lab, unit, "org.freedesktop.systemd1.Unit", "SubState"),
                  "running")  # fmt: skip
        assert int(unit_property(lab, unit, "org.freedesktop.systemd1.Service", "MainPID")) > 0
    finally:
        busctl(lab, "call", *SYSTEMD, MANAGER, "StopUnit", "ss", unit, "replace")
    _wait_for(lambda: unit_property(lab, unit, "org.freedesktop.systemd1.Unit", "ActiveState"),
              "inactive")  # fmt: skip
    result = unit_property(lab, unit, "org.freedesktop.systemd1.Service", "Result")
    assert result == "success"


def test_unit_enablement_stays_in_the_lab_overlay(lab: Lab) -> None:
    from op_dbus.lab import rootfs

    unit = "openvswitch.service"
    wants = Path("etc/systemd/system/multi-user.target.wants") / unit
    busctl(lab, "call", *SYSTEMD, MANAGER, "EnableUnitFiles", "asbb", "1", unit, "false", "false")
    try:
        assert (lab.rootfs / wants).is_symlink()
        assert not (rootfs.cached_path() / wants).exists()
    finally:
        busctl(lab, "call", *SYSTEMD, MANAGER, "DisableUnitFiles", "asb", "1", unit, "false")
    assert not (lab.rootfs / wants).exists()


def test_stop_and_start_ovs_keep_the_database(lab: Lab) -> None:
    db = lab.env()["OPDBUS_OVSDB"]
    run("ovs-vsctl", f"--db={db}", "add-br", "tbr0", "--", "set", "Bridge", "tbr0",
        "datapath_type=netdev")  # fmt: skip
    try:
        lab.stop_ovs()
        assert not lab.status()["components"]["ovsdb-server"]["running"]
        assert not lab.status()["components"]["ovs-vswitchd"]["running"]
        refused = run("ovs-vsctl", f"--db={db}", "--timeout=1", "show", check=False)
        assert refused.returncode != 0
        lab.start_ovs()
        assert "tbr0" in run("ovs-vsctl", f"--db={db}", "list-br").stdout.split()
        assert lab.status()["up"]
    finally:
        lab.start_ovs()
        run("ovs-vsctl", f"--db={db}", "--if-exists", "del-br", "tbr0")


def _wait_for(read: Callable[[], str], expected: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while (value := read()) != expected:
        if time.monotonic() > deadline:
            pytest.fail(f"expected {expected!r}, still {value!r} after {timeout} s")
        time.sleep(0.05)
