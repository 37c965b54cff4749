"""Labs of their own (not the session's): up is idempotent and repairs, down leaves nothing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from op_dbus.lab import Lab, procs, run_in_lab


def _self_cgroup() -> str:
    return Path("/proc/self/cgroup").read_text()


@pytest.fixture
def fresh_lab() -> Iterator[Lab]:
    lab = Lab(f"opdbus-f{os.getpid()}")  # unique: concurrent test runs must not collide
    lab.down()
    try:
        yield lab
    finally:
        lab.down()


def _footprint(lab: Lab) -> dict:
    """Everything of `lab` that must be gone after down."""
    state = lab._load()
    return {
        "pids": [
            (state["nspawn"]["pid"], state["nspawn"]["started"]),
            (lab.ovs.ovsdb_pid, None),
            (lab.ovs.vswitchd_pid, None),
        ],
        "cgroups": [Path(d) for d in state["cgroups"]],
    }


def _assert_gone(lab: Lab, footprint: dict) -> None:
    for ns in (lab.name, lab.upstream_netns):
        assert not Path(f"/run/netns/{ns}").exists(), ns
        assert ns not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                        text=True).stdout.split()  # fmt: skip
    for pid, started in footprint["pids"]:
        assert not procs.alive(pid, started), pid
    for d in footprint["cgroups"]:
        assert not d.exists(), d
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(lab.dir) not in mounts
    assert not lab.dir.exists()


def test_up_down_leaves_nothing(fresh_lab: Lab) -> None:
    lab = fresh_lab
    pid1_before, self_before = Path("/proc/1/cgroup").read_text(), _self_cgroup()
    assert set(lab.up()) == {"netns", "ovs", "systemd"}
    assert lab.up() == [], "a second up changes nothing"
    # a fresh boot has no failed units: "running", not merely "degraded"
    assert lab.status()["components"]["systemd"]["system_state"] == "running"
    # nspawn runs in the lab's own cgroups, and neither PID 1 nor we moved
    state = lab._load()
    nspawn_cgroup = Path(f"/proc/{state['nspawn']['pid']}/cgroup").read_text()
    assert f"op-dbus-lab-{lab.name}" in nspawn_cgroup
    assert Path("/proc/1/cgroup").read_text() == pid1_before
    assert _self_cgroup() == self_before
    # a running LXC container (its monitor sits in the lab netns) must go with the lab too
    path = str(lab.lxc_path)
    subprocess.run(["lxc-create", "-P", path, "-t", "busybox", "-n", "lifecycle"],
                   check=True, capture_output=True)  # fmt: skip
    config = lab.lxc_path / "lifecycle/config"
    config.write_text(config.read_text().replace("lxc.net.0.link = lxcbr0\n", ""))
    run_in_lab(lab, "lxc-start", "-P", path, "-n", "lifecycle", "-d")
    assert list(Path("/sys/fs/cgroup").glob("*/lxc.payload.lifecycle"))
    footprint = _footprint(lab)

    assert lab.down() == []
    _assert_gone(lab, footprint)
    assert not list(Path("/sys/fs/cgroup").glob("*/lxc.*.lifecycle"))
    assert lab.down() == [], "a second down is harmless"
    assert Path("/proc/1/cgroup").read_text() == pid1_before
    assert _self_cgroup() == self_before


def test_tcp_to_the_gateway_through_an_ovs_bridge(fresh_lab: Lab) -> None:
    """The topology op-dbus builds in the lab (eth0 in ovsbr0, 192.168.1.10/24) carries TCP;
    built by hand on a bare lab, whose eth0 has no address."""
    lab = Lab(fresh_lab.name, bare=True)
    lab.up()
    bare = json.loads(run_in_lab(lab, "ip", "-j", "-4", "addr", "show", "dev", "eth0").stdout)
    assert bare == [], "no IPv4 address on eth0"
    assert run_in_lab(lab, "ip", "route", "show", "default").stdout == ""
    setup = (
        "ovs-vsctl add-br ovsbr0 -- set Bridge ovsbr0 datapath_type=netdev"
        " && ovs-vsctl add-port ovsbr0 eth0"
        " && ip addr add 192.168.1.10/24 dev ovsbr0 && ip link set ovsbr0 up"
    )
    run_in_lab(lab, "sh", "-c", setup)
    server = subprocess.Popen(
        ["ip", "netns", "exec", lab.upstream_netns, sys.executable, "-c", _ECHO_SERVER]
    )
    try:
        answer = run_in_lab(lab, sys.executable, "-c", _ECHO_CLIENT).stdout
        assert answer.strip() == "lab"
    finally:
        server.kill()
        server.wait()


_ECHO_CLIENT = (
    "import socket, time\n"
    "for _ in range(50):\n"
    "    try:\n"
    "        s = socket.create_connection(('192.168.1.1', 7007), 3); break\n"
    "    except ConnectionRefusedError:\n"
    "        time.sleep(0.05)\n"
    "s.sendall(b'lab'); print(s.recv(16).decode())\n"
)
_ECHO_SERVER = (
    "import socket\n"
    "srv = socket.create_server(('192.168.1.1', 7007))\n"
    "conn, _ = srv.accept(); conn.sendall(conn.recv(16))\n"
)


def test_up_repairs_a_dead_component(fresh_lab: Lab) -> None:
    lab = fresh_lab
    lab.up()
    vswitchd = lab.ovs.vswitchd_pid
    assert vswitchd
    os.kill(vswitchd, signal.SIGKILL)
    procs.wait_gone(vswitchd, None, 5)
    assert not lab.status()["up"]
    assert lab.up() == ["ovs"]
    assert lab.status()["up"]


def test_down_after_a_crash(fresh_lab: Lab) -> None:
    """Daemons killed hard and the container gone mid-flight: down still clears it all."""
    lab = fresh_lab
    lab.up()
    footprint = _footprint(lab)
    for pid, _ in footprint["pids"]:
        os.kill(pid, signal.SIGKILL)
    assert lab.down() == []
    _assert_gone(lab, footprint)


def test_down_without_its_state_file(fresh_lab: Lab) -> None:
    """Pidfiles and state lost: the lab netns and the lab cgroups still lead to every process."""
    lab = fresh_lab
    lab.up()
    footprint = _footprint(lab)
    (lab.dir / "state.json").unlink()
    for pidfile in lab.ovs_dir.glob("*.pid"):
        pidfile.unlink()
    assert lab.down() == []
    _assert_gone(lab, footprint)


def test_down_of_a_lab_that_never_was() -> None:
    lab = Lab("opdbus-never")
    assert lab.down() == []
    assert not lab.dir.exists()
