"""The liblxc driver's argv and its bookkeeping of creations cut short.

The runner records each argv; for `lxc-create` it writes what lxc-create writes first (the
container's config) so the driver's own steps can follow. Real lxc-create runs in the lab
tests (tests/lab/test_lxc_apply.py), which also SIGKILL a real apply mid-creation.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from op_dbus.native import lxc as lxc_native
from op_dbus.native.lxc import (
    LxcCliDriver,
    LxcError,
    PctDriver,
    Result,
    creation_ongoing,
    split_template,
)
from op_dbus.native.lxc_config import CREATING, OWNER_LINE, Spec, UnsafeValue

SPEC = Spec(name="gateway", id="100", veth="vi100", bridge="mesh")
TEMPLATE_CONFIG = "lxc.rootfs.path = dir:/x/rootfs\nlxc.uts.name = gateway\n"


class Runner:
    """Records argv; `lxc-create` writes a config, `lxc-destroy` removes the directory;
    `lxc-ls` and `lxc-info` report the rows of `ls` ("NAME STATE PID", PID "-" when stopped)."""

    def __init__(self, lxc_path: Path, fail: str | None = None, ls: str = "") -> None:
        self.path, self.fail, self.ls = lxc_path, fail, ls
        self.calls: list[list[str]] = []

    async def __call__(self, argv: Sequence[str], timeout: float) -> Result:
        self.calls.append(list(argv))
        if argv[0] == self.fail:
            return Result(1, "", f"{argv[0]}: failed")
        name = argv[argv.index("-n") + 1] if "-n" in argv else ""
        if argv[0] == "lxc-create":
            (self.path / name / "config").write_text(TEMPLATE_CONFIG)
        elif argv[0] == "lxc-destroy":
            for item in sorted((self.path / name).rglob("*"), reverse=True):
                item.rmdir() if item.is_dir() else item.unlink()
            (self.path / name).rmdir()
        elif argv[0] == "lxc-ls":
            return Result(0, "".join(f"{row.split()[0]}\n" for row in self.ls.splitlines()), "")
        elif argv[0] == "lxc-info":
            rows = {row.split()[0]: row.split()[1:] for row in self.ls.splitlines()}
            if name not in rows:
                return Result(1, "", f"{name} doesn't exist")
            state, pid = rows[name]
            return Result(0, f"State: {state}\n" + (f"PID: {pid}\n" if pid != "-" else ""), "")
        return Result(0, "", "")


def creates(runner: Runner) -> list[list[str]]:
    return [call for call in runner.calls if call[0] == "lxc-create"]


@pytest.mark.parametrize(
    ("template", "tail"),
    [
        ("busybox", ["-t", "busybox", "--"]),
        (
            "busybox --busybox-path /bin/busybox",
            ["-t", "busybox", "--", "--busybox-path", "/bin/busybox"],
        ),
        (
            "download -d debian -r bookworm -a amd64",
            ["-t", "download", "--", "-d", "debian", "-r", "bookworm", "-a", "amd64"],
        ),
        ("debian '-r' bookworm", ["-t", "debian", "--", "-r", "bookworm"]),
    ],
)
async def test_the_name_comes_before_the_template_and_its_arguments_after_dashes(
    template: str, tail: list[str], tmp_path: Path
) -> None:
    runner = Runner(tmp_path)
    driver = LxcCliDriver(str(tmp_path), "unix:/db.sock", runner)
    await driver.create(replace(SPEC, template=template))
    assert (tmp_path / "gateway" / CREATING).exists(), "the template ran: not finished yet"
    await driver.finish(replace(SPEC, template=template))
    assert creates(runner) == [["lxc-create", "-P", str(tmp_path), "-n", "gateway", *tail]]
    config = (tmp_path / "gateway" / "config").read_text()
    assert OWNER_LINE in config and f"# op-dbus-template = {template}" in config
    assert not (tmp_path / "gateway" / CREATING).exists(), "finished: the intent is gone"


@pytest.mark.parametrize(
    "template",
    [
        "busybox --path=/",
        "busybox --pa=/",  # getopt takes an unambiguous prefix
        "busybox -p /",
        "busybox -p/",
        "busybox --name other",
        "busybox -n other",
        "download --rootfs /",
        "download -P /tmp",
        "busybox --mapped-uid 0",
        "busybox 'unterminated",
    ],
)
async def test_template_arguments_that_are_lxc_creates_own_are_refused(
    template: str, tmp_path: Path
) -> None:
    runner = Runner(tmp_path)
    with pytest.raises(LxcError, match="template"):
        await LxcCliDriver(str(tmp_path), "unix:/db.sock", runner).create(
            replace(SPEC, template=template)
        )
    assert runner.calls == [] and not (tmp_path / "gateway").exists()


def test_split_template_keeps_ordinary_options() -> None:
    assert split_template("download --no-validate -d debian") == (
        "download",
        ["--no-validate", "-d", "debian"],
    )


async def test_pct_takes_a_volume_and_no_template_arguments() -> None:
    calls: list[list[str]] = []

    async def runner(argv: Sequence[str], timeout: float) -> Result:
        calls.append(list(argv))
        return Result(0, "", "")

    spec = replace(SPEC, veth=None, template="local:vztmpl/debian.tar.zst --force")
    with pytest.raises(LxcError, match=r"no\s+arguments"):
        await PctDriver(runner).create(spec)
    assert calls == []


async def test_an_unsafe_value_is_refused_before_anything_is_made(tmp_path: Path) -> None:
    runner = Runner(tmp_path)
    driver = LxcCliDriver(str(tmp_path), "unix:/db.sock", runner)
    with pytest.raises(UnsafeValue, match="veth"):
        await driver.create(replace(SPEC, veth="v$(id>q)"))
    assert runner.calls == [] and not (tmp_path / "gateway").exists()


async def test_the_intent_is_written_before_lxc_create_runs(tmp_path: Path) -> None:
    seen: list[bool] = []
    runner = Runner(tmp_path)

    async def watching(argv: Sequence[str], timeout: float) -> Result:
        if argv[0] == "lxc-create":
            seen.append((tmp_path / "gateway" / CREATING).is_file())
        return await runner(argv, timeout)

    await LxcCliDriver(str(tmp_path), "unix:/db.sock", watching).create(SPEC)
    assert seen == [True]


async def test_a_failed_creation_leaves_nothing(tmp_path: Path) -> None:
    runner = Runner(tmp_path, fail="lxc-create")
    with pytest.raises(LxcError, match="lxc-create"):
        await LxcCliDriver(str(tmp_path), "unix:/db.sock", runner).create(SPEC)
    assert list(tmp_path.iterdir()) == []


async def test_a_failed_finish_discards_the_new_container(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(*_args: object) -> None:
        raise OSError("No space left on device")

    runner = Runner(tmp_path)
    driver = LxcCliDriver(str(tmp_path), "unix:/db.sock", runner)
    await driver.create(SPEC)
    monkeypatch.setattr(lxc_native, "write_container_files", disk_full)
    with pytest.raises(OSError, match="No space"):
        await driver.finish(SPEC)
    assert [call[0] for call in runner.calls] == ["lxc-create", "lxc-destroy"]
    assert list(tmp_path.iterdir()) == []


async def test_a_creation_cut_short_after_lxc_create_is_finished(tmp_path: Path) -> None:
    """op-dbus killed after lxc-create: config without the owner mark, intent present."""
    target = tmp_path / "gateway"
    target.mkdir()
    (target / "config").write_text(TEMPLATE_CONFIG)
    (target / CREATING).write_text('{"template": "busybox"}\n')
    runner = Runner(tmp_path, ls="gateway STOPPED -\n")
    driver = LxcCliDriver(str(tmp_path), "unix:/db.sock", runner)
    (found,) = await driver.list()
    assert (found.name, found.config.owned, found.config.incomplete) == ("gateway", True, True)

    await driver.create(SPEC)
    await driver.finish(SPEC)
    assert creates(runner) == [], "lxc-create had done its part"
    assert OWNER_LINE in (target / "config").read_text()
    assert not (target / CREATING).exists()


async def test_a_creation_cut_short_otherwise_starts_again(tmp_path: Path) -> None:
    """Killed before lxc-create wrote a config (or with another template): start over."""
    for leftover in ({}, {"config": TEMPLATE_CONFIG}):
        target = tmp_path / "gateway"
        target.mkdir()
        (target / CREATING).write_text('{"template": "download"}\n')
        for name, text in leftover.items():
            (target / name).write_text(text)
        runner = Runner(tmp_path)
        driver = LxcCliDriver(str(tmp_path), "unix:/db.sock", runner)
        if not leftover:  # lxc-ls does not list a directory without a config
            (found,) = await driver.list()
            assert (found.name, found.config.owned, found.config.incomplete) == (
                "gateway",
                True,
                True,
            )
        await driver.create(SPEC)
        await driver.finish(SPEC)
        assert len(creates(runner)) == 1
        assert OWNER_LINE in (target / "config").read_text()
        await driver.destroy("gateway")


async def test_an_unreadable_config_is_reported_for_that_container_only(tmp_path: Path) -> None:
    for name, text in {
        "good": TEMPLATE_CONFIG,
        "odd": "lxc.net.0.ipv4.address = nonsense\n",
    }.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "config").write_text(text)
    runner = Runner(tmp_path, ls="good STOPPED -\nodd STOPPED -\n")
    found = {o.name: o for o in await LxcCliDriver(str(tmp_path), "x", runner).list()}
    assert found["good"].config.unreadable is None
    assert found["odd"].config.unreadable and "odd/config" in found["odd"].config.unreadable
    assert not found["odd"].config.owned


async def test_a_listing_reads_each_state_and_pid_and_skips_one_destroyed_meanwhile(
    tmp_path: Path,
) -> None:
    for name in ("up", "down", "gone"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config").write_text(TEMPLATE_CONFIG)
    runner = Runner(tmp_path, ls="up RUNNING 4242\ndown STOPPED -\ngone STOPPED -\n")
    real = runner.__call__

    async def destroyed_after_lxc_ls(argv: Sequence[str], timeout: float) -> Result:
        if argv[0] == "lxc-info" and "gone" in argv:
            (tmp_path / "gone" / "config").unlink()
            return Result(1, "", "gone doesn't exist")
        return await real(argv, timeout)

    driver = LxcCliDriver(str(tmp_path), "x", destroyed_after_lxc_ls)
    found = {o.name: (o.running, o.pid) for o in await driver.list()}
    assert found == {"up": (True, 4242), "down": (False, None)}

    runner.fail = "lxc-info"  # a container that is still there but cannot be asked
    with pytest.raises(LxcError, match="lxc-info"):
        await LxcCliDriver(str(tmp_path), "x", runner).list()


def test_an_lxc_create_under_way_is_seen_by_its_lock(tmp_path: Path) -> None:
    """liblxc locks `partial` while lxc-create runs: a real lock held by another process."""
    partial = tmp_path / "partial"
    partial.write_text("")
    holder = subprocess.Popen(
        [
            sys.executable, "-c",
            "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR);"
            " fcntl.lockf(fd, fcntl.LOCK_EX); print('locked', flush=True); time.sleep(60)",
            str(partial),
        ],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        assert creation_ongoing(tmp_path)
    finally:
        holder.kill()
        holder.wait()
    assert not creation_ongoing(tmp_path), "left behind by a killed lxc-create"
    assert not creation_ongoing(tmp_path / "nope")


async def test_the_directory_appears_with_its_intent_already_inside(tmp_path: Path) -> None:
    staging = tmp_path / ".gateway.op-dbus-new"  # what a kill while making it leaves
    staging.mkdir()
    (staging / "junk").write_text("")
    runner = Runner(tmp_path)
    await LxcCliDriver(str(tmp_path), "unix:/db.sock", runner).create(SPEC)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gateway"]
    assert not (tmp_path / "gateway" / "junk").exists()


def test_hook_errors_are_read_bounded_on_one_line(tmp_path) -> None:
    from op_dbus.native.lxc import HOOK_ERRORS_MAX_BYTES, hook_errors

    path = tmp_path / "op-dbus-hook.err"
    assert hook_errors(path) == "", "no file: nothing to say"
    path.write_text("ovs-vsctl: no bridge named x\n\n  second line \n" + "y" * 10_000)
    said = hook_errors(path)
    assert said.startswith("ovs-vsctl: no bridge named x; second line; y")
    assert len(said) <= HOOK_ERRORS_MAX_BYTES
