"""Changes in flight, written to the data dir before the host is touched.

Each apply writes `pending/<apply_id>.json` (its checkpoint, actor, and for a try its
deadline) before its first action and removes it once its result is recorded. What is left
there tells a later process what happened: `state: "applying"` found while nobody holds the
apply lock is an apply that was killed mid-way (its checkpoint is what to roll back to);
`state: "try"` is a change waiting for its confirmation. Ownership moves by atomic file
operations, so two processes (the try keeper at the deadline, `op-dbus confirm` from another
shell) cannot both win: confirming unlinks the file, rolling back renames it to
`<apply_id>.rollback` first (kept until the rollback is recorded: one killed half-way is
redone at the next start).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from op_dbus.files import write_file
from op_dbus.plugins.base import Section

PENDING_DIR = "pending"
ID_PATTERN = re.compile(r"[0-9a-f]{32}")
MAX_FILE_BYTES = 64 * 1024 * 1024
"""A checkpoint of a big host is large, but a journal file past this is not ours."""


@dataclass
class PendingChange:
    """An apply in flight, or an applied change waiting for its confirmation by `deadline`."""

    apply_id: str
    state: str  # "applying" | "try" | "rollback"
    checkpoints: dict[str, Section]
    actor: str
    mode: str
    started: str
    deadline: float | None = None
    window: float | None = None
    """The try's length in seconds (the deadline is re-set to now + window once applied)."""
    pid: int = field(default_factory=os.getpid)

    @property
    def expired(self) -> bool:
        return self.deadline is not None and time.time() >= self.deadline

    def to_json(self) -> dict[str, Any]:
        """What `status` and a front end show (without the checkpoint itself)."""
        shown: dict[str, Any] = {
            "id": self.apply_id,
            "state": self.state,
            "actor": self.actor,
            "started": self.started,
            "sections": sorted(self.checkpoints),
            "pid": self.pid,
        }
        if self.deadline is not None:
            shown["deadline"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.deadline))
            shown["seconds_left"] = max(0.0, round(self.deadline - time.time(), 1))
        return shown

    def to_file(self) -> dict[str, Any]:
        return {
            "apply_id": self.apply_id,
            "state": self.state,
            "checkpoints": self.checkpoints,
            "actor": self.actor,
            "mode": self.mode,
            "started": self.started,
            "deadline": self.deadline,
            "window": self.window,
            "pid": self.pid,
        }

    @classmethod
    def from_file(cls, data: dict[str, Any]) -> PendingChange:
        return cls(
            apply_id=str(data["apply_id"]),
            state=str(data["state"]),
            checkpoints=dict(data["checkpoints"]),
            actor=str(data["actor"]),
            mode=str(data["mode"]),
            started=str(data["started"]),
            deadline=None if data.get("deadline") is None else float(data["deadline"]),
            window=None if data.get("window") is None else float(data["window"]),
            pid=int(data.get("pid", 0)),
        )


class JournalError(Exception):
    """A journal file that cannot be read as one (its name says which)."""


class Journal:
    """The `pending/` directory of a data dir."""

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(data_dir) / PENDING_DIR

    def _path(self, apply_id: str, suffix: str = ".json") -> Path:
        if not ID_PATTERN.fullmatch(apply_id):
            raise JournalError(f"{apply_id!r} is not a change id (32 hex digits)")
        return self.dir / f"{apply_id}{suffix}"

    def write(self, change: PendingChange) -> None:
        """Durably (fsync, atomic rename): this is what a crash leaves for the next start."""
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        suffix = ".rollback" if change.state == "rollback" else ".json"
        text = json.dumps(change.to_file(), sort_keys=True)
        write_file(self._path(change.apply_id, suffix), text, mode=0o600)

    def load(self, path: Path) -> PendingChange:
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                raise JournalError(f"{path} is larger than {MAX_FILE_BYTES} bytes")
            change = PendingChange.from_file(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError) as err:
            raise JournalError(f"{path} cannot be read: {err}") from None
        if path.suffix == ".rollback":
            change.state = "rollback"
        return change

    def get(self, apply_id: str) -> PendingChange | None:
        for suffix in (".json", ".rollback"):
            path = self._path(apply_id, suffix)
            if path.exists():
                return self.load(path)
        return None

    def all(self) -> list[PendingChange]:
        """Every change in the journal, oldest first (unreadable files raise JournalError)."""
        if not self.dir.is_dir():
            return []
        paths = [
            p
            for p in self.dir.iterdir()
            if p.suffix in (".json", ".rollback") and ID_PATTERN.fullmatch(p.stem)
        ]
        changes = [self.load(p) for p in paths]
        return sorted(changes, key=lambda c: c.started)

    def remove(self, apply_id: str) -> bool:
        """Take the change out (a confirmation, a recorded result); False if it was gone."""
        try:
            os.unlink(self._path(apply_id))
        except FileNotFoundError:
            return False
        return True

    def claim_rollback(self, apply_id: str) -> PendingChange | None:
        """Take the change for rolling it back; None when another process took it first."""
        source, target = self._path(apply_id), self._path(apply_id, ".rollback")
        try:
            os.rename(source, target)
        except FileNotFoundError:
            return self.load(target) if target.exists() else None
        return self.load(target)

    def done_rollback(self, apply_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(apply_id, ".rollback"))
