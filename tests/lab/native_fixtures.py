"""Private, throw-away peers for the native client tests: ovsdb-server, ovs-vswitchd, dbus-daemon.

Each runs from a short temp dir (unix socket paths are limited to 108 bytes) on private
sockets (recipes in design/lab.md) and is stopped by its PID, so the host's own services are
never touched. ovs-vswitchd runs in a network namespace of its own (`unshare --net`) that
disappears with it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

VSWITCH_SCHEMA = "/usr/share/openvswitch/vswitch.ovsschema"


def require(*tools: str) -> None:
    """Skip the test unless we are root and every tool is installed."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")


@dataclass
class PrivateOvs:
    dir: Path
    target: str
    server: subprocess.Popen[bytes]
    vswitchd: subprocess.Popen[bytes] | None = None

    def kill_server(self) -> None:
        """SIGKILL ovsdb-server (no clean shutdown: what a crash looks like to a client)."""
        _stop(self.server, signal.SIGKILL)


@dataclass
class PrivateBus:
    dir: Path
    address: str
    pid: int


def _stop(child: subprocess.Popen[Any], sig: int = signal.SIGTERM) -> None:
    """Signal our own child by PID and reap it (SIGKILL if it lingers)."""
    if child.poll() is None:
        child.send_signal(sig)
    try:
        child.wait(5)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _wait_until(ready: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up")
        time.sleep(0.01)


def _accepts(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def private_ovs(*, vswitchd: bool = False) -> Iterator[PrivateOvs]:
    """ovsdb-server with an initialised Open_vSwitch db; ovs-vswitchd too if asked.

    Both run as our children (no --detach), so we reap them ourselves.
    """
    require("ovsdb-tool", "ovsdb-server", "ovs-vsctl")
    if vswitchd:
        require("ovs-vswitchd", "unshare")
    with (
        tempfile.TemporaryDirectory(prefix="opdbus-ovs-") as name,
        _ovs_in(Path(name), vswitchd) as ovs,
    ):
        yield ovs


@contextlib.contextmanager
def _ovs_in(d: Path, vswitchd: bool) -> Iterator[PrivateOvs]:
    subprocess.run(["ovsdb-tool", "create", f"{d}/conf.db", VSWITCH_SCHEMA], check=True)
    server = subprocess.Popen(
        [
            *("ovsdb-server", f"{d}/conf.db", f"--remote=punix:{d}/db.sock"),
            "--remote=db:Open_vSwitch,Open_vSwitch,manager_options",
            *(f"--unixctl={d}/ovsdb-server.ctl", f"--pidfile={d}/ovsdb-server.pid"),
            *(f"--log-file={d}/ovsdb-server.log", "-vconsole:off", "--no-chdir"),
        ]
    )
    ovs = PrivateOvs(d, f"unix:{d}/db.sock", server)
    try:
        _wait_until(lambda: _accepts(d / "db.sock"), "ovsdb-server")
        subprocess.run(["ovs-vsctl", f"--db={ovs.target}", "--no-wait", "init"], check=True)
        if vswitchd:
            env = {**os.environ, "OVS_RUNDIR": str(d), "OVS_LOGDIR": str(d), "OVS_DBDIR": str(d)}
            ovs.vswitchd = subprocess.Popen(
                [
                    *("unshare", "--net", "--", "ovs-vswitchd", f"unix:{d}/db.sock"),
                    *("--pidfile", "--log-file", "-vconsole:off", "--no-chdir"),
                ],
                env=env,
            )
            _wait_until((d / "ovs-vswitchd.pid").exists, "ovs-vswitchd")
        yield ovs
    finally:
        if ovs.vswitchd is not None:
            _stop(ovs.vswitchd)
        _stop(server)


BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={dir}/system_bus_socket</listen>
  <auth>EXTERNAL</auth>
  <servicedir>{dir}/services</servicedir>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
"""

# A service file makes its name activatable; listing it never runs Exec.
ACTIVATABLE_NAME = "org.opdbus.Test.Activatable"
SERVICE_FILE = f"[D-BUS Service]\nName={ACTIVATABLE_NAME}\nExec=/bin/false\nUser=root\n"


@contextlib.contextmanager
def private_system_bus() -> Iterator[PrivateBus]:
    """A system-type dbus-daemon on a private socket, allow-all policy, one activatable name."""
    require("dbus-daemon")
    with tempfile.TemporaryDirectory(prefix="opdbus-bus-") as name, _bus_in(Path(name)) as bus:
        yield bus


@contextlib.contextmanager
def _bus_in(directory: Path) -> Iterator[PrivateBus]:
    (directory / "services").mkdir()
    (directory / "services" / f"{ACTIVATABLE_NAME}.service").write_text(SERVICE_FILE)
    config = directory / "system.conf"
    config.write_text(BUS_CONFIG.format(dir=directory))
    daemon = subprocess.Popen(
        ["dbus-daemon", f"--config-file={config}", "--nofork", "--print-address=1", "--nopidfile"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert daemon.stdout is not None
        address = daemon.stdout.readline().strip()  # printed once it listens
        if not address:
            raise RuntimeError("dbus-daemon did not come up")
        yield PrivateBus(directory, address, daemon.pid)
    finally:
        _stop(daemon)
