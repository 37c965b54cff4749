"""The offline audit file: JSON lines holding everything needed to verify the log without us.

Line 1 `{"type": "ledger", "format": 1, "origin", "public_key", "size"}`, then one
`{"type": "entry", "index", "data"}` per entry (`data` is the exact canonical text that was
hashed) and one `{"type": "checkpoint", "note"}` per signed checkpoint, oldest first.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from op_dbus.files import atomic_writer
from op_dbus.ledger.audit import AuditReport, audit

if TYPE_CHECKING:
    from op_dbus.ledger.store import Ledger

FORMAT = 1


class ExportError(ValueError):
    """The export file is not one we can read."""


def export_ledger(ledger: Ledger, path: str | os.PathLike[str], public_key: str) -> int:
    """Write the export to `path` (see `op_dbus.files`) and return the entry count; the header
    names `public_key` as the signer.

    Entries and checkpoints come from one read transaction: an append meanwhile would sign a
    size the export does not hold, and the export would not verify."""
    count = 0
    with atomic_writer(path) as out, ledger.snapshot():
        size = ledger.size()
        header = {
            "type": "ledger",
            "format": FORMAT,
            "origin": ledger.origin,
            "public_key": public_key,
            "size": size,
        }
        out.write(json.dumps(header, sort_keys=True) + "\n")
        for entry in ledger.entries(0, size):
            record = {"type": "entry", "index": entry.index, "data": entry.data}
            out.write(json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n")
            count += 1
        for note in ledger.checkpoints():
            out.write(json.dumps({"type": "checkpoint", "note": note}, sort_keys=True) + "\n")
    return count


def _records(path: Path):
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise ExportError(f"{path}:{number}: not JSON: {exc}") from None
            if not isinstance(record, dict) or "type" not in record:
                raise ExportError(f"{path}:{number}: a record needs a type")
            yield number, record


def verify_export(path: str | os.PathLike[str], *, key: str | None = None) -> AuditReport:
    """Verify an export with nothing but the file (and, best, a public key known beforehand)."""
    path = Path(path)
    rows: list[tuple[int, bytes]] = []
    notes: list[str] = []
    header = None
    try:
        for number, record in _records(path):
            kind = record["type"]
            if number == 1:
                if kind != "ledger" or record.get("format") != FORMAT:
                    raise ExportError(f"{path}:1: not an op-dbus ledger export (format {FORMAT})")
                header = record
            elif kind == "entry" and isinstance(record.get("data"), str):
                index = record.get("index")
                if not isinstance(index, int):
                    raise ExportError(f"{path}:{number}: entry without an integer index")
                rows.append((index, record["data"].encode()))
            elif kind == "checkpoint" and isinstance(record.get("note"), str):
                notes.append(record["note"])
            else:
                raise ExportError(f"{path}:{number}: unexpected {kind!r} record")
    except OSError as exc:
        raise ExportError(f"{path}: {exc.strerror}") from None
    if header is None:
        raise ExportError(f"{path}: empty file")
    vkey = str(header.get("public_key", ""))
    if key is not None and key.strip() != vkey:
        raise ExportError(f"{path}: signed by {vkey!r}, not by the expected key {key.strip()!r}")
    report = audit(rows, notes, vkey)
    if header.get("size") != report.size:
        said = header.get("size")
        report.add(report.size, f"the header says {said} entries, the file has {report.size}")
    return report
