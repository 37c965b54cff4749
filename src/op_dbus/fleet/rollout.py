"""A staged rollout of a group's new state, like kubernetes-nmstate's `maxUnavailable`.

The new state is written beside the group's (`rollouts/<group>/state`); hosts take it once
released (`rollouts/<group>/hosts/<host>`), at most `max_unavailable` at a time. A batch is
done when each of its hosts reports the release's revision applied (its probes passed and it
confirmed) or failed (it rolled itself back). One failure halts the rollout: later hosts are
never released, so they stay as they were. When every host applied, the state becomes the
group's own state and the rollout keys go, in one transaction. The record under
`rollouts/<id>` keeps each host's condition (Pending, Progressing, Available, Failed).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import aetcd.exceptions

from op_dbus.errors import InvalidInput, Refused
from op_dbus.fleet import keys
from op_dbus.fleet.store import EtcdClient, decode, encode
from op_dbus.ledger.entries import now_text

DEFAULT_TIMEOUT = 180.0
"""Seconds a batch may take before its silent hosts count as failed."""


async def members(client: EtcdClient, group: str) -> list[str]:
    prefix = f"{keys.MEMBERS}{group}/"
    return sorted(
        kv.key.decode().removeprefix(prefix) for kv in (await client.range_at(prefix)).kvs
    )


async def rollout(
    client: EtcdClient,
    group: str,
    sections: dict[str, Any],
    *,
    max_unavailable: int,
    timeout: float = DEFAULT_TIMEOUT,
    replace: bool = False,
    on_change: Callable[[dict[str, Any]], None] = lambda _record: None,
) -> dict[str, Any]:
    """Run the rollout to its end; the final record (`status` complete or halted)."""
    keys.check_name(group, "--group")
    if max_unavailable < 1:
        raise InvalidInput("--max-unavailable must be at least 1")
    hosts = await members(client, group)
    if not hosts:
        raise InvalidInput(f"group {group} has no members (fleet join {group} HOST...)")
    record: dict[str, Any] = {
        "id": uuid.uuid4().hex[:12],
        "group": group,
        "state": {"version": 1, "plugins": sections},
        "max_unavailable": max_unavailable,
        "status": "running",
        "started": now_text(),
        "hosts": {h: {"condition": "Pending"} for h in hosts},
    }
    conditions: dict[str, dict[str, Any]] = record["hosts"]
    await _start(client, group, record, replace)
    on_change(record)
    for start in range(0, len(hosts), max_unavailable):
        batch = hosts[start : start + max_unavailable]
        revision = await _release(client, group, batch)
        for host in batch:
            conditions[host] = {"condition": "Progressing", "revision": revision}
        await _save(client, record)
        on_change(record)
        conditions.update(await wait_for(client, batch, revision, timeout))
        if any(conditions[h]["condition"] == "Failed" for h in batch):
            record.update(status="halted", ended=now_text())
            await _save(client, record)
            on_change(record)
            return record
        await _save(client, record)
        on_change(record)
    await _finish(client, group, record)
    on_change(record)
    return record


async def _start(client: EtcdClient, group: str, record: dict[str, Any], replace: bool) -> None:
    """Refused while another rollout of the group runs (its record says so) unless
    `replace`; a halted or complete one is replaced. The state key agents read is written
    once per rollout: a status change there would be a new revision for every host."""
    state_key = keys.rollout_state(group).encode()
    reply = await client.get_at(keys.rollout_state(group))
    if reply.kvs:
        active = decode(reply.kvs[0].value, keys.rollout_state(group))
        previous = await client.get_at(keys.rollout_record(str(active.get("id", ""))))
        status = decode(previous.kvs[0].value, "rollout").get("status") if previous.kvs else None
        if status == "running" and not replace:
            raise Refused(
                f"group {group}",
                f"rollout {active.get('id')} is running since {active.get('started')} "
                "(--replace takes over from one whose command died)",
            )
        compare = client.transactions.mod(state_key) == reply.kvs[0].mod_revision
    else:
        compare = client.transactions.create(state_key) == 0
    t = client.transactions
    prefix = keys.rollout_releases(group).encode()  # the previous rollout's releases go
    ok, _ = await client.txn(
        [compare],
        [
            t.delete(prefix, aetcd.utils.prefix_range_end(prefix)),
            t.put(state_key, encode(_active(record))),
            t.put(keys.rollout_record(record["id"]).encode(), encode(record)),
        ],
    )
    if not ok:
        raise Refused(f"group {group}", "another rollout started meanwhile")


def _active(record: dict[str, Any]) -> dict[str, Any]:
    """What agents read: the state and whose rollout it is (not the conditions)."""
    return {k: record[k] for k in ("id", "group", "state", "started")}


async def _release(client: EtcdClient, group: str, batch: list[str]) -> int:
    t = client.transactions
    ops = [t.put(keys.rollout_release(group, h).encode(), b"{}") for h in batch]
    return (await client.txn([], ops))[1]


async def _save(client: EtcdClient, record: dict[str, Any]) -> None:
    await client.put(keys.rollout_record(record["id"]).encode(), encode(record))


async def _finish(client: EtcdClient, group: str, record: dict[str, Any]) -> None:
    record.update(status="complete", ended=now_text())
    t = client.transactions
    prefix = keys.rollout_prefix(group).encode()
    await client.txn(
        [],
        [
            t.put(keys.group_state(group).encode(), encode(record["state"])),
            t.delete(prefix, aetcd.utils.prefix_range_end(prefix)),
            t.put(keys.rollout_record(record["id"]).encode(), encode(record)),
        ],
    )


def condition(status: dict[str, Any] | None, revision: int) -> dict[str, Any] | None:
    """A host's condition for a release at `revision`, from its status (None: not yet)."""
    if not status or (status.get("desired_revision") or 0) < revision:
        return None
    code = status.get("exit_code")
    if (status.get("applied_revision") or 0) >= revision and code == 0:
        return {"condition": "Available", "revision": revision, "message": status.get("message")}
    if code not in (0, None):
        return {
            "condition": "Failed",
            "revision": revision,
            "exit_code": code,
            "message": status.get("message"),
        }
    return None


async def wait_for(
    client: EtcdClient, hosts: list[str], revision: int, timeout: float
) -> dict[str, dict[str, Any]]:
    """Each host's condition once it reported on `revision`: one read, then a watch of the
    status keys from the revision after that read (no polling)."""
    decided: dict[str, dict[str, Any]] = {}
    reply = await client.range_at(keys.STATUS)
    for kv in reply.kvs:
        host = kv.key.decode().removeprefix(keys.STATUS)
        if host in hosts and (c := condition(decode(kv.value, host), revision)):
            decided[host] = c
    if len(decided) == len(hosts):
        return decided
    stream = await client.watch_prefix(
        keys.STATUS.encode(), start_revision=reply.header.revision + 1
    )
    try:
        async with asyncio.timeout(timeout):
            async for event in stream:
                host = event.kv.key.decode().removeprefix(keys.STATUS)
                fresh = host in hosts and host not in decided and event.kind == "PUT"
                if fresh and (c := condition(decode(event.kv.value, host), revision)):
                    decided[host] = c
                if len(decided) == len(hosts):
                    break
    except TimeoutError:
        pass
    finally:
        await stream.cancel()
    for host in hosts:
        decided.setdefault(
            host,
            {"condition": "Failed", "revision": revision, "message": f"no report in {timeout:g} s"},
        )
    return decided
