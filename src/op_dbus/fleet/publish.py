"""Publishing the host's signed ledger checkpoints for `fleet audit`.

Each published checkpoint carries the consistency proof, computed by this host from its own
ledger, from the previous published one to it. A ledger rewritten after the fact cannot
produce a proof that leads from the root it published before: the auditor names the host.
The signer (the ledger's verifier key) is published once; a different one later is refused
here and shows in the audit.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from typing import Any

from op_dbus.fleet import keys
from op_dbus.fleet.store import EtcdClient, decode, encode
from op_dbus.ledger.store import Ledger, LedgerError, encode_proof

log = logging.getLogger("op_dbus.fleet")


def _read_ledger(data_dir: str, previous: int) -> dict[str, Any] | None:
    try:
        with Ledger.open(data_dir, readonly=True) as ledger:
            note = ledger.latest_checkpoint()
            if note is None:
                return None
            size = ledger.checkpoint_size()
            proof = ledger.consistency_proof(previous, size) if previous <= size else None
            return {
                "note": note,
                "size": size,
                "from_size": previous,
                "proof": None if proof is None else encode_proof(proof),
                "signer": ledger.public_key(),
            }
    except (OSError, sqlite3.Error, LedgerError) as err:
        log.warning("fleet: ledger in %s not readable for publishing: %s", data_dir, err)
        return None


async def latest_published(client: EtcdClient, host: str) -> tuple[int, dict[str, Any] | None]:
    """The number of the last checkpoint `host` published, and that checkpoint."""
    reply = await client.range_at(keys.checkpoints(host), last=True)
    if not reply.kvs:
        return 0, None
    key = reply.kvs[0].key.decode()
    number = key.rsplit("/", 1)[1]
    return int(number) if number.isdigit() else 0, decode(reply.kvs[0].value, key)


async def publish_checkpoint(client: EtcdClient, host: str, data_dir: str) -> None:
    count, last = await latest_published(client, host)
    previous = int(last["size"]) if last else 0
    record = await asyncio.to_thread(_read_ledger, data_dir, previous)
    if record is None or (last is not None and record["note"] == last.get("note")):
        return
    signer = record.pop("signer")
    if signer is not None:
        key = keys.signer(host).encode()
        await client.txn(
            [client.transactions.create(key) == 0], [client.transactions.put(key, signer.encode())]
        )
    key = keys.checkpoint(host, count + 1).encode()
    await client.txn(  # never over one published before
        [client.transactions.create(key) == 0], [client.transactions.put(key, encode(record))]
    )
