"""The lab's LXC path: containers created there run through the lab netns; down removes them all."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from op_dbus.lab import cgroups
from op_dbus.lab.errors import LabError

TEMPLATE = Path("/usr/share/lxc/templates/lxc-busybox")
CGROUP_ROOT = Path("/sys/fs/cgroup")
ExecArgv = Callable[[Sequence[str]], list[str]]


def check_tools() -> None:
    """The busybox template needs a static busybox; both come from Debian packages."""
    missing = [
        what
        for what, ok in (
            ("lxc-create (package lxc)", shutil.which("lxc-create")),
            (f"{TEMPLATE} (package lxc-templates)", TEMPLATE.exists()),
            ("busybox (package busybox-static)", shutil.which("busybox")),
        )
        if not ok
    ]
    if missing:
        raise LabError("LXC for the lab is missing: " + ", ".join(missing))


def containers(path: Path) -> list[str]:
    if not path.is_dir():
        return []
    return sorted(d.name for d in path.iterdir() if (d / "config").is_file())


def pivot_dirs() -> list[Path]:
    """liblxc's shared helper cgroups; the lab removes them at down only if it caused them."""
    return sorted(CGROUP_ROOT.glob("*/lxc.pivot"))


def _container_cgroups(name: str) -> list[Path]:
    pattern = re.compile(rf"lxc\.(monitor|payload)\.{re.escape(name)}(-\d+)?")
    return sorted(
        d for d in CGROUP_ROOT.glob("*/lxc.*") if d.is_dir() and pattern.fullmatch(d.name)
    )


def drop_empty_cgroups(name: str) -> None:
    """Remove the empty cgroups a killed container `name` left behind (its stop never ran).

    Only empty directories go (rmdir refuses the others), so a live container of that name
    elsewhere on the host keeps its cgroups and its processes.
    """
    for directory in _container_cgroups(name):
        inner = sorted((p for p in directory.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts))
        for cgroup in [*inner, directory]:
            with contextlib.suppress(OSError):  # not empty: processes still live in it
                cgroup.rmdir()


def teardown(path: Path, exec_argv: ExecArgv | None) -> None:
    """Stop and destroy every container under `path`, then kill leftovers and drop their cgroups.

    `exec_argv` is None when the lab netns is already gone; then only PIDs and cgroups are left.
    """
    for name in containers(path):
        if exec_argv is not None:
            for command in (["lxc-stop", "-k"], ["lxc-destroy", "-f"]):
                subprocess.run(
                    exec_argv([*command, "-P", str(path), "-n", name]),
                    capture_output=True, check=False, timeout=30,
                )  # fmt: skip
        cgroups.remove(_container_cgroups(name))
    if path.exists():
        shutil.rmtree(path)
