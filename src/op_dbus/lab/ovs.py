"""A private Open vSwitch (ovsdb-server + userspace-datapath ovs-vswitchd) inside the lab netns.

Only one netdev vswitchd works per network namespace, and its tap devices belong to the lab netns,
so the host's own OVS (if any) and interfaces are never involved.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from op_dbus.lab import procs
from op_dbus.lab.errors import LabError

SCHEMA = Path("/usr/share/openvswitch/vswitch.ovsschema")
ExecArgv = Callable[[Sequence[str]], list[str]]


def ovsdb_server_argv(rundir: Path) -> list[str]:
    """ovsdb-server on `rundir`/conf.db with its socket, control socket, pidfile and log there."""
    return [
        "ovsdb-server", str(rundir / "conf.db"), f"--remote=punix:{rundir / 'db.sock'}",
        "--remote=db:Open_vSwitch,Open_vSwitch,manager_options",
        f"--unixctl={rundir / 'ovsdb-server.ctl'}", f"--pidfile={rundir / 'ovsdb-server.pid'}",
        f"--log-file={rundir / 'ovsdb-server.log'}", "--no-chdir",
    ]  # fmt: skip


def datapath_types(db: str) -> str:
    """Open_vSwitch.datapath_types as ovs-vsctl prints it ("" if unreadable).

    ovs-vswitchd fills it once it serves, so "netdev" in it is the sign the userspace datapath
    is ready.
    """
    result = subprocess.run(
        ["ovs-vsctl", f"--db={db}", "--no-wait", "--timeout=2",
         "get", "Open_vSwitch", ".", "datapath_types"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return result.stdout.strip() if result.returncode == 0 else ""


def wait_until(ready: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    """Poll `ready` until it holds; LabError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise LabError(f"{what} not ready within {timeout:g} s")
        time.sleep(0.01)


class Ovs:
    """The lab's OVS: files, sockets, logs and pidfiles all in `rundir`."""

    def __init__(self, rundir: Path, exec_argv: ExecArgv) -> None:
        self.rundir = rundir
        self.db = f"unix:{rundir / 'db.sock'}"
        self._exec_argv = exec_argv

    @property
    def ovsdb_pid(self) -> int | None:
        """The running ovsdb-server's PID, None if it is not running."""
        return procs.pidfile_process(self.rundir / "ovsdb-server.pid", "ovsdb-server")

    @property
    def vswitchd_pid(self) -> int | None:
        """The running ovs-vswitchd's PID, None if it is not running."""
        return procs.pidfile_process(self.rundir / "ovs-vswitchd.pid", "ovs-vswitchd")

    def running(self) -> bool:
        return self.ovsdb_pid is not None and self.vswitchd_pid is not None

    def start(self, timeout: float = 10.0) -> None:
        """Start whichever daemon is not running; the database survives restarts."""
        self.rundir.mkdir(parents=True, exist_ok=True)
        conf = self.rundir / "conf.db"
        if not conf.exists():
            self._run(["ovsdb-tool", "create", str(conf), str(SCHEMA)])
        d = self.rundir
        if self.ovsdb_pid is None:
            self._run([*ovsdb_server_argv(d), "--detach"])
            self._run(["ovs-vsctl", f"--db={self.db}", "--no-wait", "init"])
        if self.vswitchd_pid is None:
            self._run(
                [
                    "env", f"OVS_RUNDIR={d}", f"OVS_LOGDIR={d}", f"OVS_DBDIR={d}",
                    "ovs-vswitchd", self.db, f"--pidfile={d / 'ovs-vswitchd.pid'}",
                    f"--log-file={d / 'ovs-vswitchd.log'}", "--detach", "--no-chdir",
                ]
            )  # fmt: skip
        log = d / "ovs-vswitchd.log"
        what = f"ovs-vswitchd (datapath_types without netdev; see {log})"
        wait_until(lambda: "netdev" in datapath_types(self.db), what, timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Ask each daemon to exit over its control socket, then make sure by PID."""
        vswitchd = self.vswitchd_pid
        if vswitchd is not None:
            self._stop(vswitchd, self.rundir / f"ovs-vswitchd.{vswitchd}.ctl", timeout)
        ovsdb = self.ovsdb_pid
        if ovsdb is not None:
            self._stop(ovsdb, self.rundir / "ovsdb-server.ctl", timeout)

    def _stop(self, pid: int, ctl: Path, timeout: float) -> None:
        started = procs.start_time(pid)  # taken first: once it exits, the PID may be reused
        if started is None:
            return
        if ctl.exists():
            subprocess.run(
                ["ovs-appctl", "-t", str(ctl), "--timeout=3", "exit"],
                capture_output=True, check=False,
            )  # fmt: skip
        procs.terminate(pid, started, timeout)

    def _run(self, command: list[str]) -> None:
        result = subprocess.run(
            self._exec_argv(command), capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise LabError(f"{command[0]} failed: {result.stderr.strip() or result.stdout.strip()}")
