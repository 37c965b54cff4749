"""A real systemd as PID 1 of an nspawn container, booted from an overlay of the cached rootfs.

Its system bus is bind-mounted out to the host, which makes it the lab's system bus. nspawn runs
in cgroups of the lab's own (see cgroups.py) and is stopped by PID.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from op_dbus.lab import cgroups, procs
from op_dbus.lab.errors import LabError

READY_STATES = ("running", "degraded")


def bus_address(bus_dir: Path) -> str:
    return f"unix:path={bus_dir / 'system_bus_socket'}"


def is_mounted(path: Path) -> bool:
    target = str(path)
    with open("/proc/self/mountinfo") as mountinfo:
        return any(line.split()[4] == target for line in mountinfo)


def mount_overlay(lower: Path, overlay_dir: Path, merged: Path) -> None:
    """An overlay on the cache, so a lab's changes (units, enablement) never reach the cache."""
    if is_mounted(merged):
        return
    upper, work = overlay_dir / "upper", overlay_dir / "work"
    for d in (upper, work, merged):
        d.mkdir(parents=True, exist_ok=True)
    options = f"lowerdir={lower},upperdir={upper},workdir={work}"
    result = subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", options, str(merged)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise LabError(f"mounting the rootfs overlay on {merged}: {result.stderr.strip()}")


def unmount(path: Path) -> None:
    """Unmount `path` if mounted; lazily if something still holds it."""
    if not is_mounted(path):
        return
    if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def install_dbus_policies(source: Path | None, merged: Path) -> None:
    """The repo's D-Bus policies (data/dbus/*.conf) into the container, before its bus starts."""
    if source is None or not source.is_dir():
        return
    target = merged / "etc/dbus-1/system.d"
    target.mkdir(parents=True, exist_ok=True)
    for conf in sorted(source.glob("*.conf")):
        shutil.copyfile(conf, target / conf.name)


def boot(
    machine: str, merged: Path, bus_dir: Path, cgroup_dirs: list[Path], log: Path
) -> tuple[int, int]:
    """Start nspawn detached from us, inside `cgroup_dirs`; returns (pid, start time)."""
    bus_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        "systemd-nspawn", "-D", str(merged), "--boot", "--register=no", "--keep-unit",
        "--private-network", "--console=passive", f"--machine={machine}",
        f"--bind={bus_dir}:/run/dbus",
    ]  # fmt: skip
    pidfile = log.with_suffix(".pid")
    pidfile.unlink(missing_ok=True)
    # setsid -f: nspawn is nobody's child here, so it outlives `lab up` and never lingers as a
    # zombie of a test process; the shell records its PID, then becomes nspawn.
    wrapper = ["setsid", "-f", "sh", "-c", 'echo $$ > "$0" && exec "$@"', str(pidfile), *argv]
    with open(log, "ab") as out:
        subprocess.run(
            wrapper,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=lambda: cgroups.join(cgroup_dirs),
            check=True,
        )
    deadline = time.monotonic() + 5
    while (pid := procs.read_pidfile(pidfile)) is None and time.monotonic() < deadline:
        time.sleep(0.01)
    started = procs.start_time(pid) if pid else None
    if pid is None or started is None:
        raise LabError(f"systemd-nspawn did not start; see {log}")
    return pid, started


def system_state(bus: str) -> str:
    result = subprocess.run(
        ["busctl", f"--address={bus}", "get-property", "org.freedesktop.systemd1",
         "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager", "SystemState"],
        capture_output=True, text=True, check=False, timeout=5,
    )  # fmt: skip
    words = result.stdout.split()
    return words[1].strip('"') if result.returncode == 0 and len(words) == 2 else ""


def wait_ready(bus: str, pid: int, started: int, log: Path, timeout: float = 60.0) -> str:
    """Wait until systemd reports running/degraded; fail early if nspawn died."""
    deadline = time.monotonic() + timeout
    while True:
        state = system_state(bus) if Path(bus.removeprefix("unix:path=")).exists() else ""
        if state in READY_STATES:
            return state
        if not procs.alive(pid, started):
            raise LabError(f"the lab container stopped while booting; see {log}")
        if time.monotonic() > deadline:
            raise LabError(f"systemd in the lab container not ready after {timeout:.0f} s "
                           f"(SystemState={state or 'unknown'}); see {log}")  # fmt: skip
        time.sleep(0.05)


def stop(pid: int | None, started: int | None, timeout: float = 10.0) -> None:
    """SIGTERM to nspawn is a clean poweroff of the container; SIGKILL after `timeout`."""
    if pid:
        procs.terminate(pid, started, timeout)
