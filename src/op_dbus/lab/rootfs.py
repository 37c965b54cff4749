"""The lab's Debian rootfs for systemd-nspawn: built once with debootstrap, cached, never booted.

Labs boot an overlay of it (see `container.py`), so the cache stays pristine across labs and tests.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from op_dbus.lab.errors import LabError

SUITE = "bookworm"
INCLUDE = ("systemd", "systemd-sysv", "dbus", "iproute2", "openvswitch-switch")
FALLBACK_MIRROR = "http://deb.debian.org/debian"
CACHE_DIR = Path("/var/cache/op-dbus")
MARKER = ".op-dbus-lab-rootfs"
# Debian's OVS units need the kernel datapath and fail in the container; ours replaces them.
MASKED_UNITS = (
    "openvswitch-switch.service",
    "ovsdb-server.service",
    "ovs-vswitchd.service",
    "ovs-record-hostname.service",
)
_RECIPE_REVISION = "1"  # bump when _customize changes


def _unit_text() -> str:
    return resources.files("op_dbus.lab").joinpath("files/openvswitch.service").read_text()


def version() -> str:
    """A digest of the recipe: a changed recipe gets a new cache directory, never a stale rootfs."""
    recipe = "\n".join([SUITE, *INCLUDE, *MASKED_UNITS, _RECIPE_REVISION, _unit_text()])
    return f"{SUITE}-{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"


def cached_path() -> Path:
    return CACHE_DIR / f"lab-rootfs-{version()}"


def is_built(path: Path | None = None) -> bool:
    return ((path or cached_path()) / MARKER).is_file()


def _deb822_stanzas(text: str) -> list[dict[str, str]]:
    stanzas = []
    for block in re.split(r"\n\s*\n", text):
        lines = (ln for ln in block.splitlines() if ":" in ln and not ln.startswith("#"))
        stanzas.append(
            {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines)}
        )
    return stanzas


def apt_mirror(etc: Path = Path("/etc/apt")) -> str:
    """The Debian mirror apt already uses (maybe the only one reachable), else the default."""
    for sources in sorted((etc / "sources.list.d").glob("*.sources")):
        for stanza in _deb822_stanzas(sources.read_text()):
            types, suites = stanza.get("types", "").split(), stanza.get("suites", "").split()
            uris = stanza.get("uris", "").split()
            if "deb" in types and SUITE in suites and uris:
                return uris[0]
    sources_list = etc / "sources.list"
    if sources_list.is_file():
        for line in sources_list.read_text().splitlines():
            words = re.sub(r"\[[^]]*\]", "", line).split()
            if len(words) >= 3 and words[0] == "deb" and words[2] == SUITE:
                return words[1]
    return FALLBACK_MIRROR


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    with open(CACHE_DIR / ".lab-rootfs.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _customize(root: Path) -> None:
    system = root / "etc/systemd/system"
    (system / "openvswitch.service").write_text(_unit_text())
    for unit in MASKED_UNITS:
        link = system / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    for wants in system.glob("*.wants"):
        for unit in MASKED_UNITS:
            (wants / unit).unlink(missing_ok=True)
    for deb in (root / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()


def _in_use(path: Path) -> bool:
    return f"lowerdir={path}," in Path("/proc/self/mountinfo").read_text()


def build(force: bool = False, log: Path | None = None) -> Path:
    """Build the cached rootfs unless present: atomic (temp dir, marker, rename) and locked."""
    target = cached_path()
    with _build_lock():
        if is_built(target) and not force:
            return target
        if _in_use(target):
            raise LabError(f"{target} is the lower layer of a running lab: `lab down` it first")
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        mirror = apt_mirror()
        argv = [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(INCLUDE)}",
            SUITE,
            str(tmp),
            mirror,
        ]
        if shutil.which("debootstrap") is None:
            raise LabError("debootstrap is not installed (Debian package debootstrap)")
        with open(log or os.devnull, "ab") as out:
            result = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, check=False)
        if result.returncode != 0:
            shutil.rmtree(tmp, ignore_errors=True)
            where = f"; see {log}" if log else ""
            raise LabError(f"debootstrap from {mirror} failed (exit {result.returncode}){where}")
        _customize(tmp)
        (tmp / MARKER).write_text(json.dumps({"version": version(), "mirror": mirror}) + "\n")
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
        prune_other_versions(keep=target)
        return target


def prune_other_versions(keep: Path) -> list[Path]:
    """Remove rootfs trees of older recipes (~280 MB each) that no running lab sits on."""
    removed = []
    for old in keep.parent.glob("lab-rootfs-*"):
        if old != keep and (old / MARKER).exists() and not _in_use(old):
            shutil.rmtree(old)
            removed.append(old)
    return removed
