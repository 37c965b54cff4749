"""Writing a file by name: exclusive temporary file, fsync, rename; symlinks are never followed."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from op_dbus.files import atomic_writer, write_file


def names(directory: Path) -> set[str]:
    return set(os.listdir(directory))


def test_the_file_gets_exactly_the_mode_asked_for_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        write_file(tmp_path / "public", "x\n", mode=0o644)
    finally:
        os.umask(old)
    write_file(tmp_path / "secret", "k\n", mode=0o600)
    assert stat.S_IMODE((tmp_path / "public").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "secret").stat().st_mode) == 0o600
    assert (tmp_path / "public").read_text() == "x\n"
    assert names(tmp_path) == {"public", "secret"}  # no temporary file left behind


def test_a_symlink_at_the_target_is_replaced_not_written_through(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_text("precious\n")
    work = tmp_path / "shared"
    work.mkdir()
    (work / "out").symlink_to(outside)
    (work / "dangling").symlink_to(tmp_path / "created-through-the-link")
    write_file(work / "out", "new\n")
    write_file(work / "dangling", "new\n")
    assert outside.read_text() == "precious\n"
    assert not (tmp_path / "created-through-the-link").exists()
    assert not (work / "out").is_symlink() and (work / "out").read_text() == "new\n"
    assert not (work / "dangling").is_symlink()


def test_without_replace_nothing_at_the_name_is_overwritten(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("old\n")
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    for name in ("key", "link"):
        with pytest.raises(FileExistsError):
            write_file(tmp_path / name, "new\n", replace=False)
    assert (tmp_path / "key").read_text() == "old\n"
    assert not (tmp_path / "nowhere").exists()
    assert names(tmp_path) == {"key", "link"}
    write_file(tmp_path / "fresh", "new\n", replace=False)
    assert (tmp_path / "fresh").read_text() == "new\n"


def test_a_writer_that_fails_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "export"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_writer(target) as out:
        out.write("half")
        raise RuntimeError("killed mid-way")
    assert target.read_text() == "old\n"
    assert names(tmp_path) == {"export"}
