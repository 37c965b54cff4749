"""`Lab`: one disposable sandbox of real components (netns pair, OVS, systemd in nspawn, LXC path).

Everything a lab starts is recorded in its directory (state.json, pidfiles), so `down` stops it by
PID from any process, after a crash or a half-finished `up`, as often as asked.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from op_dbus.lab import cgroups, container, netns, nsexec, procs, rootfs
from op_dbus.lab import lxc as lxcpath
from op_dbus.lab.errors import LabError
from op_dbus.lab.ovs import Ovs

RUN_ROOT = Path("/run/op-dbus-lab")
DEFAULT_NAME = "opdbus-lab"
_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,20}")


def _repo_dbus_policies() -> Path | None:
    """data/dbus of the source checkout op_dbus runs from (an editable install), if any."""
    candidate = Path(__file__).resolve().parents[3] / "data" / "dbus"
    return candidate if candidate.is_dir() else None


class Lab:
    """A named lab; constructing it touches nothing."""

    def __init__(self, name: str = DEFAULT_NAME) -> None:
        if not _NAME.fullmatch(name):
            raise LabError(f"invalid lab name {name!r}: use 1-21 of a-z, 0-9 and '-'")
        self.name = name
        self.upstream_netns = f"{name}-up"
        self.dir = RUN_ROOT / name
        self.rootfs = self.dir / "rootfs"
        self.units_dir = self.rootfs / "etc/systemd/system"
        self.ovs_dir = self.dir / "ovs"
        self.bus_dir = self.dir / "dbus"
        self.lxc_path = self.dir / "lxc"
        self.data_dir = self.dir / "data"
        self.ovs = Ovs(self.ovs_dir, self.exec_argv)
        self._state_file = self.dir / "state.json"
        self._sysfs_mnt = self.dir / ".sysfs"
        self._nspawn_log = self.dir / "nspawn.log"
        self._cgroup_name = f"op-dbus-lab-{name}"

    # --- the environment the lab offers -------------------------------------------------------
    @property
    def system_bus(self) -> str:
        return container.bus_address(self.bus_dir)

    def env(self) -> dict[str, str]:
        """Variables that point op-dbus and the stock tools at this lab instead of the host."""
        return {
            "OPDBUS_OVSDB": self.ovs.db,
            "OPDBUS_SYSTEM_BUS": self.system_bus,
            "DBUS_SYSTEM_BUS_ADDRESS": self.system_bus,
            "OPDBUS_LXC_PATH": str(self.lxc_path),
            "OPDBUS_DATA_DIR": str(self.data_dir),
            "OVS_RUNDIR": str(self.ovs_dir),
            "OPDBUS_LAB_NETNS": self.name,
            "OPDBUS_LAB_ROOTFS": str(self.rootfs),
        }

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        """The argv that runs `argv` inside the lab netns with `env()` added."""
        return nsexec.argv(self.name, self._sysfs_mnt, argv, self.env())

    # --- lifecycle ----------------------------------------------------------------------------
    def is_up(self) -> bool:
        return self._state_file.exists()

    def up(self, log: Callable[[str], object] | None = None) -> list[str]:
        """Bring up whatever is missing; returns the components it (re)started (empty: was up)."""
        say = log or (lambda _msg: None)
        if not rootfs.is_built():
            say(f"building the lab rootfs {rootfs.cached_path()} (once, about a minute)")
            rootfs.build(log=rootfs.CACHE_DIR / "lab-rootfs-build.log")
        for d in (self.dir, self.data_dir, self.lxc_path, self._sysfs_mnt):
            d.mkdir(parents=True, exist_ok=True)
        state = self._load()
        state.setdefault("name", self.name)
        state.setdefault("created", time.time())
        state.setdefault("lxc_pivot_existed", [str(p) for p in lxcpath.pivot_dirs()])
        self._save(state)
        started = []
        if not netns.healthy(self.name, self.upstream_netns):
            netns.create(self.name, self.upstream_netns)
            started.append("netns")
        if not self.ovs.running():
            self.ovs.start()
            started.append("ovs")
        if not self._systemd_running(state):
            self._start_systemd(state)
            started.append("systemd")
        lxcpath.check_tools()
        return started

    def _systemd_running(self, state: dict[str, Any]) -> bool:
        nspawn = state.get("nspawn") or {}
        return procs.alive(nspawn.get("pid"), nspawn.get("started")) and (
            container.system_state(self.system_bus) in container.READY_STATES
        )

    def _start_systemd(self, state: dict[str, Any]) -> None:
        self._stop_systemd(state)  # a half-dead container from before
        container.mount_overlay(rootfs.cached_path(), self.dir / "overlay", self.rootfs)
        state["overlay"] = str(self.rootfs)
        container.install_dbus_policies(_repo_dbus_policies(), self.rootfs)
        dirs = cgroups.create(self._cgroup_name)
        state["cgroups"] = [str(d) for d in dirs]
        self._save(state)
        pid, started = container.boot(self.name, self.rootfs, self.bus_dir, dirs, self._nspawn_log)
        state["nspawn"] = {"pid": pid, "started": started}
        self._save(state)
        container.wait_ready(self.system_bus, pid, started, self._nspawn_log)

    def _stop_systemd(self, state: dict[str, Any]) -> None:
        nspawn = state.pop("nspawn", None) or {}
        container.stop(nspawn.get("pid"), nspawn.get("started"))
        recorded = {Path(d) for d in state.pop("cgroups", [])}
        stayed = cgroups.remove(sorted(recorded | set(cgroups.existing(self._cgroup_name))))
        if stayed:
            state["cgroups"] = [str(d) for d in stayed]
        container.unmount(self.rootfs)
        (self.bus_dir / "system_bus_socket").unlink(missing_ok=True)
        self._save(state)

    def down(self) -> list[str]:
        """Stop and remove everything of this lab; safe when half up, down already, or crashed.

        Returns what could not be removed (empty on success).
        """
        state = self._load()
        exec_argv = self.exec_argv if netns.exists(self.name) else None
        lxcpath.teardown(self.lxc_path, exec_argv)
        self.ovs.stop()
        self._stop_systemd(state)
        for ns in (self.name, self.upstream_netns):
            procs.terminate_all(set(netns.pids(ns)))  # stray `lab exec` children, lost pidfiles
            netns.delete(ns)
        existed = set(state.get("lxc_pivot_existed", []))
        cgroups.remove([p for p in lxcpath.pivot_dirs() if str(p) not in existed and not
                        cgroups.pids(p)])  # fmt: skip
        left = self._leftovers(state)
        if not left:
            shutil.rmtree(self.dir, ignore_errors=True)
            with contextlib.suppress(OSError):  # another lab may be starting: keep it then
                RUN_ROOT.rmdir()
        return left

    def _leftovers(self, state: dict[str, Any]) -> list[str]:
        left = [f"netns {ns}" for ns in (self.name, self.upstream_netns) if netns.exists(ns)]
        left += [f"cgroup {d}" for d in state.get("cgroups", []) if Path(d).exists()]
        if container.is_mounted(self.rootfs):
            left.append(f"mount {self.rootfs}")
        return left

    # --- OVS handles for tests ----------------------------------------------------------------
    def stop_ovs(self) -> None:
        """Stop ovsdb-server and ovs-vswitchd (the database file stays)."""
        self.ovs.stop()

    def start_ovs(self) -> None:
        """Start them again on the same database."""
        self.ovs.start()

    # --- status -------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        state = self._load()
        nspawn = state.get("nspawn") or {}
        nspawn_alive = procs.alive(nspawn.get("pid"), nspawn.get("started"))
        system_state = container.system_state(self.system_bus) if nspawn_alive else ""
        ovsdb, vswitchd = self.ovs.ovsdb_pid, self.ovs.vswitchd_pid
        components: dict[str, dict[str, Any]] = {
            "netns": {
                "running": netns.healthy(self.name, self.upstream_netns),
                "netns": self.name,
                "upstream_netns": self.upstream_netns,
            },
            "ovsdb-server": {
                "running": ovsdb is not None,
                "pid": ovsdb,
                "socket": self.ovs.db,
                "netns": self.name,
            },
            "ovs-vswitchd": {
                "running": vswitchd is not None,
                "pid": vswitchd,
                "netns": self.name,
            },
            "systemd": {
                "running": system_state in container.READY_STATES,
                "pid": nspawn.get("pid") if nspawn_alive else None,
                "socket": self.system_bus,
                "system_state": system_state or None,
                "rootfs": str(self.rootfs),
            },
            "lxc": {
                "running": self.lxc_path.is_dir(),
                "path": str(self.lxc_path),
                "containers": lxcpath.containers(self.lxc_path),
            },
        }
        return {
            "name": self.name,
            "dir": str(self.dir),
            "up": self.is_up() and all(bool(c["running"]) for c in components.values()),
            "components": components,
        }

    # --- state file ---------------------------------------------------------------------------
    def _load(self) -> dict[str, Any]:
        try:
            return json.loads(self._state_file.read_text())
        except FileNotFoundError:
            return {}

    def _save(self, state: dict[str, Any]) -> None:
        if not self.dir.is_dir():  # down of a lab whose directory is already gone
            return
        tmp = self._state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1) + "\n")
        tmp.replace(self._state_file)


def run_in_lab(
    lab: Lab, *argv: str, check: bool = True, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """Run `argv` in the lab netns with the lab env; text output captured.

    For op-dbus itself pass `sys.executable, "-m", "op_dbus", ...` so the checkout's code runs.
    """
    return subprocess.run(
        lab.exec_argv(argv), capture_output=True, text=True, check=check, timeout=timeout
    )
