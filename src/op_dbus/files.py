"""Writing a file by name without trusting what already sits at that name.

Every file op-dbus writes goes to a temporary file created exclusively (mkstemp: O_CREAT|O_EXCL,
so a symlink planted at any name is never followed) in the target's directory, is fsynced, and
is then renamed over the target. A rename replaces a symlink at the target instead of writing
through it, and a reader sees the old file or the whole new one, never half of it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


@contextmanager
def atomic_writer(
    path: str | os.PathLike[str], *, mode: int = 0o644, replace: bool = True
) -> Iterator[IO[str]]:
    """A text file that becomes `path` (with exactly `mode`) when the block ends without error.

    `replace=False` refuses to overwrite anything at `path`, symlinks included: FileExistsError.
    """
    target = Path(path)
    fd, temporary = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".partial", dir=target.parent
    )
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            os.fchmod(out.fileno(), mode)
            yield out
            out.flush()
            os.fsync(out.fileno())
        if replace:
            os.replace(temporary, target)
        else:
            os.link(temporary, target, follow_symlinks=False)  # atomic; fails on any existing name
            os.unlink(temporary)
    except BaseException:
        if os.path.lexists(temporary):
            os.unlink(temporary)
        raise
    _sync_directory(target.parent)


def write_file(
    path: str | os.PathLike[str], text: str, *, mode: int = 0o644, replace: bool = True
) -> None:
    """Write `text` to `path` as `atomic_writer` does."""
    with atomic_writer(path, mode=mode, replace=replace) as out:
        out.write(text)


def _sync_directory(directory: Path) -> None:
    """Make the rename itself durable (a key that vanished on power loss would be re-made)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
