"""JSON views of the ledger for front ends (CLI `--json`, MCP): one shape on every surface.

Light to import (the CLI loads it for `--help`); the store is imported where it is used.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from op_dbus.ledger.audit import AuditReport
    from op_dbus.ledger.store import Entry, Ledger


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


def entry_json(entry: Entry) -> dict[str, Any]:
    return {"index": entry.index, "leaf_hash": b64(entry.leaf_hash), "entry": entry.value}


def report_json(report: AuditReport) -> dict[str, Any]:
    return {
        "ok": report.ok,
        "size": report.size,
        "root": b64(report.root),
        "checkpoints": report.checkpoints,
        "verified_size": report.verified_size,
        "first_bad_index": report.first_bad,
        "problems": [{"index": p.index, "message": p.message} for p in report.problems],
    }


def inclusion_json(ledger: Ledger, index: int, size: int | None = None) -> dict[str, Any]:
    """Entry `index`'s inclusion proof in the tree of `size` (default: the latest
    checkpoint's), checked against the stored root first (merkle.ProofError: damaged)."""
    from op_dbus.ledger import merkle
    from op_dbus.ledger.store import encode_proof

    size = ledger.checkpoint_size() if size is None else size
    proof = ledger.inclusion_proof(index, size)
    leaf, root = ledger.entry(index).leaf_hash, ledger.root(size)
    merkle.verify_inclusion(index, size, leaf, proof, root)
    return {
        "leafIdx": index,
        "treeSize": size,
        "leafHash": b64(leaf),
        "root": b64(root),
        "proof": encode_proof(proof),
    }
