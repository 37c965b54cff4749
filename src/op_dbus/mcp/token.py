"""The HTTP server's bearer token: one secret in a 0600 file in the data dir.

Created on first use, printed by `op-dbus mcp token`, replaced by `--rotate`. The server
re-reads the file when it changes, so a rotation takes effect without a restart. Only the
token's id (a digest prefix) is ever logged or written to the ledger.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

TOKEN_NAME = "mcp.token"


def default_path(data_dir: str) -> Path:
    return Path(data_dir) / TOKEN_NAME


def token_id(token: str) -> str:
    """What names a token in the ledger and logs: not the secret, not reversible."""
    return hashlib.sha256(token.encode()).hexdigest()[:12]


def _write(path: Path, token: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (token + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def load_or_create(path: Path) -> str:
    """The token in `path`, made first when there is none. A file others may read is
    refused: the token would be known beyond its owner."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        token = secrets.token_urlsafe(32)
        _write(path, token)
        return token
    if mode & 0o077:
        raise PermissionError(f"{path} is readable by others (mode {mode & 0o777:o}): chmod 600 it")
    token = path.read_text().strip()
    if len(token) < 16:
        raise PermissionError(f"{path} holds no usable token: `op-dbus mcp token --rotate`")
    return token


def rotate(path: Path) -> str:
    token = secrets.token_urlsafe(32)
    _write(path, token)
    return token


class TokenFile:
    """The current token of a file, re-read when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._token = ""
        self.current()

    def current(self) -> str:
        st = self.path.stat()
        stamp = (st.st_ino, st.st_mtime_ns)
        if stamp != self._stamp:
            self._token = load_or_create(self.path)
            self._stamp = stamp
        return self._token

    def check(self, given: str) -> str | None:
        """The token's id when `given` is the token, else None (constant-time compare)."""
        try:
            token = self.current()
        except OSError:
            return None
        if hmac.compare_digest(given.encode(), token.encode()):
            return token_id(token)
        return None
