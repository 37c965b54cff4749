"""The lab's pure logic: mirror discovery, names, the exec argv."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from op_dbus.lab import Lab, LabError, procs, rootfs
from op_dbus.lab.ovs import Ovs


def test_mirror_from_deb822_sources(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://security.example/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n\n"
        "Types: deb deb-src\n# a comment: here\nURIs: http://mirror.example/debian\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n"
    )
    assert rootfs.apt_mirror(tmp_path) == "http://mirror.example/debian"


def test_mirror_from_sources_list(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text(
        "# deb http://commented.example/debian bookworm main\n"
        "deb http://security.example/debian-security bookworm-security main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://old.example/debian bookworm main\n"
    )
    assert rootfs.apt_mirror(tmp_path) == "http://old.example/debian"


def test_mirror_fallback(tmp_path: Path) -> None:
    assert rootfs.apt_mirror(tmp_path) == rootfs.FALLBACK_MIRROR


def test_a_new_rootfs_prunes_older_recipes_only(tmp_path: Path) -> None:
    keep, old, foreign = (
        tmp_path / n for n in ("lab-rootfs-new", "lab-rootfs-old", "lab-rootfs-x")
    )
    for tree in (keep, old, foreign):
        (tree / "etc").mkdir(parents=True)
    (keep / rootfs.MARKER).write_text("{}")
    (old / rootfs.MARKER).write_text("{}")  # foreign has no marker: not ours to delete

    assert rootfs.prune_other_versions(keep) == [old]
    assert keep.exists() and foreign.exists() and not old.exists()


def test_rootfs_version_follows_the_recipe(monkeypatch: pytest.MonkeyPatch) -> None:
    before = rootfs.version()
    monkeypatch.setattr(rootfs, "INCLUDE", (*rootfs.INCLUDE, "ethtool"))
    assert rootfs.version() != before


@pytest.mark.parametrize("name", ["", "Upper", "a/b", "x" * 22, "-lead", "sp ace"])
def test_bad_lab_names_are_refused(name: str) -> None:
    with pytest.raises(LabError):
        Lab(name)


def test_exec_argv_enters_only_the_lab_netns_and_adds_env() -> None:
    lab = Lab("opdbus-argv")
    argv = lab.exec_argv(["ovs-vsctl", "show"])
    assert argv[:2] == ["nsenter", "--net=/run/netns/opdbus-argv"]
    assert argv[-2:] == ["ovs-vsctl", "show"]
    assert f"OVS_RUNDIR={lab.ovs_dir}" in argv
    assert "ip" not in argv, "ip netns exec would hide /sys/fs/cgroup from liblxc"
    assert not lab.dir.exists(), "building an argv touches nothing"
    assert os.path.isabs(argv[argv.index("env") - 1])


@pytest.fixture
def stubborn() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Three children that ignore SIGTERM (killed at the end whatever the test did)."""
    children = [subprocess.Popen(["sh", "-c", 'trap "" TERM; sleep 30']) for _ in range(3)]
    time.sleep(0.2)  # let sh install its trap before anyone sends SIGTERM
    yield children
    for child in children:
        child.kill()
        child.wait()


def test_terminate_all_shares_one_timeout(stubborn: list[subprocess.Popen[bytes]]) -> None:
    began = time.monotonic()
    procs.terminate_all({child.pid for child in stubborn}, timeout=1.0)
    took = time.monotonic() - began
    assert all(child.poll() is not None for child in stubborn), "SIGKILLed and reaped"
    assert took < 2.5, f"{took:.1f} s: the 1 s timeout was waited once per process"


def test_ovs_ignores_pidfiles_naming_another_process(
    stubborn: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """A dead daemon's PID reused by a stranger: not running, and stop leaves the stranger be."""
    stranger = stubborn[0]
    for pidfile in ("ovsdb-server.pid", "ovs-vswitchd.pid"):
        (tmp_path / pidfile).write_text(f"{stranger.pid}\n")
    ovs = Ovs(tmp_path, list)
    assert (ovs.ovsdb_pid, ovs.vswitchd_pid) == (None, None)
    assert not ovs.running()
    ovs.stop(timeout=0.5)
    assert stranger.poll() is None
