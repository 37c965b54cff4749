"""Private, throw-away peers for the native client tests: ovsdb-server, ovs-vswitchd, dbus-daemon.

OVS comes from `op_dbus.lab.private_ovs` (shared with the benchmarks); the dbus-daemon here
runs the same way: a short temp dir, private sockets (recipes in design/lab.md), stopped by
its PID, so the host's own services are never touched.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from op_dbus.lab import private_ovs as ovs_children
from op_dbus.lab.ovs import SCHEMA
from op_dbus.lab.private_ovs import PrivateOvs, stop_child

VSWITCH_SCHEMA = str(SCHEMA)
__all__ = ["PrivateOvs", "private_ovs", "private_system_bus", "require"]


def require(*tools: str) -> None:
    """Skip the test unless we are root and every tool is installed."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)}")


@dataclass
class PrivateBus:
    dir: Path
    address: str
    pid: int


@contextlib.contextmanager
def private_ovs(*, vswitchd: bool = False) -> Iterator[PrivateOvs]:
    """ovsdb-server with an initialised Open_vSwitch db; ovs-vswitchd too if asked."""
    require("ovsdb-tool", "ovsdb-server", "ovs-vsctl")
    if vswitchd:
        require("ovs-vswitchd", "unshare")
    with ovs_children.private_ovs(vswitchd=vswitchd) as ovs:
        yield ovs


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
        stop_child(daemon)
