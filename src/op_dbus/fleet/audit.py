"""`fleet audit`: every host's published checkpoints, checked one after the other.

Each checkpoint's signature must verify with the host's key (given with `--key HOST=VKEY`,
else the one the host published first), and each must extend the one before: the sizes
never shrink and the host's consistency proof leads from the earlier root to the later one
(RFC 9162). A host whose ledger was truncated or rewritten after it published is named.
"""

from __future__ import annotations

import base64
from typing import Any

from op_dbus.fleet import keys
from op_dbus.fleet.store import EtcdClient, decode
from op_dbus.ledger.checkpoint import CheckpointError, open_checkpoint
from op_dbus.ledger.merkle import ProofError, verify_consistency


async def audit_fleet(client: EtcdClient, trusted: dict[str, str]) -> dict[str, Any]:
    published: dict[str, list[dict[str, Any]]] = {}
    for kv in (await client.range_at(keys.CHECKPOINTS)).kvs:
        host = kv.key.decode().removeprefix(keys.CHECKPOINTS).split("/")[0]
        published.setdefault(host, []).append(decode(kv.value, kv.key.decode()))
    signers = {
        kv.key.decode().removeprefix(keys.SIGNERS): kv.value.decode(errors="replace")
        for kv in (await client.range_at(keys.SIGNERS)).kvs
    }
    hosts = [
        audit_host(host, records, trusted.get(host) or signers.get(host))
        for host, records in sorted(published.items())
    ]
    bad = [h["host"] for h in hosts if not h["ok"]]
    return {"ok": not bad, "rewritten": bad, "hosts": hosts}


def audit_host(host: str, records: list[dict[str, Any]], vkey: str | None) -> dict[str, Any]:
    problems: list[str] = []
    previous = None
    if vkey is None:
        problems.append("no signer key published or given (--key HOST=VKEY)")
    for number, record in enumerate(records, 1):
        if vkey is None:
            break
        try:
            checkpoint = open_checkpoint(str(record.get("note", "")), vkey)
        except CheckpointError as err:
            problems.append(f"checkpoint {number}: {err}")
            continue
        if previous is not None:
            problem = _extends(previous, checkpoint, record)
            if problem:
                problems.append(f"checkpoint {number} (size {checkpoint.size}): {problem}")
        previous = checkpoint
    return {
        "host": host,
        "ok": not problems,
        "checkpoints": len(records),
        "size": previous.size if previous else None,
        "problems": problems,
    }


def _extends(previous: Any, checkpoint: Any, record: dict[str, Any]) -> str | None:
    if checkpoint.size < previous.size:
        return f"the ledger shrank from {previous.size} entries: it was truncated"
    if record.get("from_size") != previous.size or record.get("proof") is None:
        return f"no consistency proof from size {previous.size}"
    try:
        proof = [base64.b64decode(p, validate=True) for p in record["proof"]]
        verify_consistency(previous.size, checkpoint.size, proof, previous.root, checkpoint.root)
    except (ProofError, ValueError, TypeError) as err:
        return (
            f"not an extension of the ledger of size {previous.size} it published before "
            f"({err}): its history was rewritten"
        )
    return None
