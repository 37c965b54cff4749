"""A throw-away ovsdb-server (and, if asked, ovs-vswitchd) run as children of this process.

For tests and benchmarks that want an OVS of their own without a whole lab. It runs from a
short temp dir (unix socket paths are limited to 108 bytes) on private sockets and is stopped
by PID, so the host's own OVS is never touched. Being our children (no --detach), ovsdb-server
can be SIGKILLed mid-request by a test. ovs-vswitchd runs in a network namespace of its own
(`unshare --net`) that disappears with it; it is ready once it reports `netdev` in
`datapath_types`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from op_dbus.lab.ovs import SCHEMA, datapath_types, ovsdb_server_argv, wait_until


@dataclass
class PrivateOvs:
    dir: Path
    target: str
    server: subprocess.Popen[bytes]
    vswitchd: subprocess.Popen[bytes] | None = None

    def vsctl_argv(self, *args: str) -> list[str]:
        """ovs-vsctl against this OVS; `--no-wait` without vswitchd (it would wait forever)."""
        wait = [] if self.vswitchd is not None else ["--no-wait"]
        return ["ovs-vsctl", f"--db={self.target}", *wait, "--timeout=120", *args]

    def vsctl(self, *args: str) -> str:
        done = subprocess.run(self.vsctl_argv(*args), capture_output=True, text=True, check=True)
        return done.stdout.strip()

    def kill_server(self) -> None:
        """SIGKILL ovsdb-server (no clean shutdown: what a crash looks like to a client)."""
        stop_child(self.server, signal.SIGKILL)


def stop_child(child: subprocess.Popen[Any], sig: int = signal.SIGTERM) -> None:
    """Signal our own child by PID and reap it (SIGKILL if it lingers)."""
    if child.poll() is None:
        child.send_signal(sig)
    try:
        child.wait(5)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


@contextlib.contextmanager
def private_ovs(*, vswitchd: bool = False) -> Iterator[PrivateOvs]:
    """ovsdb-server with an initialised Open_vSwitch database; ovs-vswitchd too if asked."""
    with tempfile.TemporaryDirectory(prefix="opdbus-ovs-") as name:
        d = Path(name)
        subprocess.run(["ovsdb-tool", "create", f"{d}/conf.db", str(SCHEMA)], check=True)
        server = subprocess.Popen([*ovsdb_server_argv(d), "-vconsole:off"])
        ovs = PrivateOvs(d, f"unix:{d}/db.sock", server)
        try:
            wait_until(lambda: accepts(d / "db.sock"), "ovsdb-server")
            ovs.vsctl("init")
            if vswitchd:
                ovs.vswitchd = _start_vswitchd(ovs)
                wait_until(lambda: "netdev" in datapath_types(ovs.target), "ovs-vswitchd", 10.0)
            yield ovs
        finally:
            if ovs.vswitchd is not None:
                stop_child(ovs.vswitchd)
            stop_child(server)


def _start_vswitchd(ovs: PrivateOvs) -> subprocess.Popen[bytes]:
    d = ovs.dir
    env = {**os.environ, "OVS_RUNDIR": str(d), "OVS_LOGDIR": str(d), "OVS_DBDIR": str(d)}
    return subprocess.Popen(
        [
            *("unshare", "--net", "--", "ovs-vswitchd", ovs.target),
            *("--pidfile", "--log-file", "-vconsole:off", "--no-chdir"),
        ],
        env=env,
    )


def accepts(path: Path) -> bool:
    """True once something listens on unix socket `path`."""
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True
