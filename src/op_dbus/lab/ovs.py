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


class Ovs:
    """The lab's OVS: files, sockets, logs and pidfiles all in `rundir`."""

    def __init__(self, rundir: Path, exec_argv: ExecArgv) -> None:
        self.rundir = rundir
        self.db = f"unix:{rundir / 'db.sock'}"
        self._exec_argv = exec_argv

    @property
    def ovsdb_pid(self) -> int | None:
        return procs.read_pidfile(self.rundir / "ovsdb-server.pid")

    @property
    def vswitchd_pid(self) -> int | None:
        return procs.read_pidfile(self.rundir / "ovs-vswitchd.pid")

    def running(self) -> bool:
        return procs.alive(self.ovsdb_pid) and procs.alive(self.vswitchd_pid)

    def start(self, timeout: float = 10.0) -> None:
        """Start whichever daemon is not running; the database survives restarts."""
        self.rundir.mkdir(parents=True, exist_ok=True)
        conf = self.rundir / "conf.db"
        if not conf.exists():
            self._run(["ovsdb-tool", "create", str(conf), str(SCHEMA)])
        d = self.rundir
        if not procs.alive(self.ovsdb_pid):
            self._run(
                [
                    "ovsdb-server", str(conf), f"--remote=punix:{d / 'db.sock'}",
                    "--remote=db:Open_vSwitch,Open_vSwitch,manager_options",
                    f"--unixctl={d / 'ovsdb-server.ctl'}", f"--pidfile={d / 'ovsdb-server.pid'}",
                    f"--log-file={d / 'ovsdb-server.log'}", "--detach", "--no-chdir",
                ]
            )  # fmt: skip
            self._run(["ovs-vsctl", f"--db={self.db}", "--no-wait", "init"])
        if not procs.alive(self.vswitchd_pid):
            self._run(
                [
                    "env", f"OVS_RUNDIR={d}", f"OVS_LOGDIR={d}", f"OVS_DBDIR={d}",
                    "ovs-vswitchd", self.db, f"--pidfile={d / 'ovs-vswitchd.pid'}",
                    f"--log-file={d / 'ovs-vswitchd.log'}", "--detach", "--no-chdir",
                ]
            )  # fmt: skip
        self._wait_datapath_types(timeout)

    def datapath_types(self) -> str:
        result = subprocess.run(
            ["ovs-vsctl", f"--db={self.db}", "--no-wait", "--timeout=2",
             "get", "Open_vSwitch", ".", "datapath_types"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        return result.stdout.strip() if result.returncode == 0 else ""

    def _wait_datapath_types(self, timeout: float) -> None:
        """vswitchd fills datapath_types once it is serving: the sign it is ready."""
        deadline = time.monotonic() + timeout
        while "netdev" not in self.datapath_types():
            if time.monotonic() > deadline:
                raise LabError(
                    f"ovs-vswitchd did not report datapath_types within {timeout:.0f} s; "
                    f"see {self.rundir / 'ovs-vswitchd.log'}"
                )
            time.sleep(0.02)

    def stop(self, timeout: float = 5.0) -> None:
        """Ask each daemon to exit over its control socket, then make sure by PID."""
        vswitchd = self.vswitchd_pid
        if procs.alive(vswitchd):
            ctl = self.rundir / f"ovs-vswitchd.{vswitchd}.ctl"
            self._appctl(ctl)
            procs.terminate(vswitchd, timeout=timeout)
        ovsdb = self.ovsdb_pid
        if procs.alive(ovsdb):
            self._appctl(self.rundir / "ovsdb-server.ctl")
            procs.terminate(ovsdb, timeout=timeout)

    def _appctl(self, ctl: Path) -> None:
        if ctl.exists():
            subprocess.run(
                ["ovs-appctl", "-t", str(ctl), "--timeout=3", "exit"],
                capture_output=True, check=False,
            )  # fmt: skip

    def _run(self, command: list[str]) -> None:
        result = subprocess.run(
            self._exec_argv(command), capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise LabError(f"{command[0]} failed: {result.stderr.strip() or result.stdout.strip()}")
