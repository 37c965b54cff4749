"""Cgroups of the lab's own, in every hierarchy, below the cgroups of the process that starts it.

Why: a systemd started from a process in a root cgroup moves every process of that cgroup, PID 1
included, into /init.scope (lab.md). The nspawn child joins these cgroups before it execs.
"""

from __future__ import annotations

import os
from pathlib import Path

from op_dbus.lab import procs


def _mounts() -> list[tuple[Path, str, frozenset[str]]]:
    """(mount point, fstype, super options) of every cgroup mount."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        pre, _, post = line.partition(" - ")
        fstype, _source, options = post.split()[:3]
        if fstype in ("cgroup", "cgroup2"):
            found.append((Path(pre.split()[4]), fstype, frozenset(options.split(","))))
    return found


def own_dirs() -> list[Path]:
    """This process's cgroup directory in each mounted hierarchy."""
    v1: list[tuple[frozenset[str], str]] = []
    unified = None
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        hid, controllers, own = line.split(":", 2)
        if hid == "0":
            unified = own
        else:
            v1.append((frozenset(controllers.split(",")), own))
    dirs = []
    for mount, fstype, options in _mounts():
        path: str | None
        if fstype == "cgroup2":
            path = unified
        else:
            path = next((p for keys, p in v1 if keys <= options), None)
        if path is not None:
            dirs.append(mount / path.lstrip("/"))
    return dirs


def existing(name: str) -> list[Path]:
    """The `name` cgroups below this process's that exist (found without any recorded state)."""
    return [d / name for d in own_dirs() if (d / name).is_dir()]


def create(name: str) -> list[Path]:
    """mkdir `name` below this process's cgroup in every hierarchy; returns the directories."""
    created = []
    for parent in own_dirs():
        child = parent / name
        child.mkdir(exist_ok=True)
        for knob in ("cpuset.cpus", "cpuset.mems"):  # an empty cpuset refuses members
            if (child / knob).exists() and not (child / knob).read_text().strip():
                (child / knob).write_text((parent / knob).read_text())
        created.append(child)
    return created


def join(dirs: list[Path]) -> None:
    """Move the calling process into `dirs` (used as a preexec_fn: between fork and exec)."""
    pid = str(os.getpid())
    for d in dirs:
        (d / "cgroup.procs").write_text(pid)


def pids(d: Path) -> set[int]:
    """Every PID in `d` and its descendants."""
    found: set[int] = set()
    if not d.is_dir():
        return found
    for procs_file in d.rglob("cgroup.procs"):
        try:
            found.update(int(p) for p in procs_file.read_text().split())
        except (FileNotFoundError, OSError):
            continue
    return found


def remove(dirs: list[Path]) -> list[Path]:
    """Kill what is left inside by PID, then rmdir bottom-up; returns directories that stayed."""
    procs.terminate_all(set().union(*(pids(d) for d in dirs)) if dirs else set())
    stayed = []
    for d in dirs:
        if not d.is_dir():
            continue
        for sub in sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            _rmdir(sub)
        if not _rmdir(d):
            stayed.append(d)
    return stayed


def _rmdir(d: Path) -> bool:
    try:
        d.rmdir()
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return True
