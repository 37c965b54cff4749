"""Runtime changes: what was applied through the daemon on top of its state file.

Like firewalld's runtime configuration: the daemon enforces its state file plus these, they
are kept across daemon restarts (a file in the data dir), listed by `op-dbus status`, and
dropped by `op-dbus reload` or when the state file changes.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from op_dbus.engine.overlay import overlay
from op_dbus.files import write_file
from op_dbus.ledger.entries import digest
from op_dbus.plugins.base import Section

log = logging.getLogger("op_dbus.daemon")

FILE_NAME = "runtime.json"


@dataclass
class RuntimeChanges:
    path: Path
    base: str | None
    """Digest of the state file's sections the changes were made on top of."""
    changes: list[dict[str, Any]] = field(default_factory=list)
    """Each: {"actor", "time", "sections"}, oldest first."""

    @classmethod
    def load(cls, data_dir: str | os.PathLike[str], base: dict[str, Section]) -> RuntimeChanges:
        """The changes kept from the daemon's last run, unless the state file changed since
        (then they are dropped: the file is what the admin wants now)."""
        path = Path(data_dir) / FILE_NAME
        wanted = digest(base)
        try:
            saved = json.loads(path.read_text())
            changes, saved_base = saved["changes"], saved.get("base")
        except FileNotFoundError:
            return cls(path, wanted)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("runtime changes in %s unreadable, not enforced: %s", path, exc)
            return cls(path, wanted)
        kept = cls(path, wanted, [c for c in changes if isinstance(c, dict) and "sections" in c])
        if saved_base != wanted and kept.changes:
            log.info("the state file changed: %d runtime change(s) dropped", len(kept.changes))
            kept.drop()
        return kept

    def desired(self, base: dict[str, Section]) -> dict[str, Section]:
        """`base` (the state file's sections) with every runtime change laid over it; one
        applied with prune replaces the sections it names."""
        merged = base
        for change in self.changes:
            merged = overlay(merged, change["sections"], replace=bool(change.get("prune")))
        return merged

    def add(
        self, sections: dict[str, Section], *, actor: str, time: str, prune: bool = False
    ) -> None:
        self.changes.append({"actor": actor, "time": time, "sections": sections, "prune": prune})
        self._save()

    def drop(self, base: dict[str, Section] | None = None) -> int:
        """Forget every change (a reload); `base`: the state file now laid under them."""
        dropped = len(self.changes)
        self.changes = []
        if base is not None:
            self.base = digest(base)
        self._save()
        return dropped

    def summary(self) -> list[dict[str, Any]]:
        return [
            {"actor": c["actor"], "time": c["time"], "sections": sorted(c["sections"])}
            for c in self.changes
        ]

    def _save(self) -> None:
        """Atomically (op_dbus.files): a crash leaves the old list or the new one."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        text = json.dumps({"base": self.base, "changes": self.changes}, sort_keys=True)
        write_file(self.path, text, mode=0o600)
