"""What `op-dbus fleet put|join|leave|status|diff|history` do against etcd.

Every write of a desired document is a compare-and-swap on the revision its writer read:
two admins who read the same revision cannot both store, the second is refused.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import aetcd.exceptions

from op_dbus.errors import InvalidInput, Refused
from op_dbus.fleet import keys
from op_dbus.fleet.desired import desired_for
from op_dbus.fleet.store import EtcdClient, decode, encode

HISTORY_LIMIT = 50


def target_key(host: str | None, group: str | None) -> str:
    """The desired key of exactly one of `--host NAME` / `--group NAME`."""
    if (host is None) == (group is None):
        raise InvalidInput("give exactly one of --host NAME or --group NAME")
    if host is not None:
        return keys.host_state(keys.check_name(host, "--host"))
    return keys.group_state(keys.check_name(group or "", "--group"))


async def read_key(client: EtcdClient, key: str) -> tuple[bytes | None, int]:
    """The value of `key` and its mod_revision (None, 0 when absent)."""
    reply = await client.get_at(key)
    if not reply.kvs:
        return None, 0
    return reply.kvs[0].value, reply.kvs[0].mod_revision


async def put_document(
    client: EtcdClient, key: str, sections: dict[str, Any], expect_revision: int | None
) -> dict[str, Any]:
    """Store a validated document at `key` if it still has the revision read (or the one
    the caller expects); Refused otherwise, with nothing stored."""
    _, current = await read_key(client, key)
    expected = current if expect_revision is None else expect_revision
    if expected != current:
        raise _changed(key, expected, current)
    value = encode({"version": 1, "plugins": sections})
    compare = (
        client.transactions.mod(key.encode()) == expected
        if expected
        else client.transactions.create(key.encode()) == 0
    )
    ok, revision = await client.txn([compare], [client.transactions.put(key.encode(), value)])
    if not ok:
        _, now = await read_key(client, key)
        raise _changed(key, expected, now)
    return {"key": key, "revision": revision, "previous_revision": current, "bytes": len(value)}


def _changed(key: str, expected: int, now: int) -> Refused:
    return Refused(
        key,
        f"changed since revision {expected} was read (now {now or 'deleted'}); nothing "
        "stored: look at it again (fleet diff) and put once more",
    )


async def set_membership(client: EtcdClient, group: str, hosts: list[str], join: bool) -> int:
    """Hosts join or leave `group` in one transaction; the revision it made."""
    keys.check_name(group, "group")
    ops = []
    for host in hosts:
        key = keys.member(group, keys.check_name(host, "host")).encode()
        ops.append(client.transactions.put(key, b"{}") if join else client.transactions.delete(key))
    return (await client.txn([], ops))[1]


async def desired_mirror(client: EtcdClient) -> tuple[dict[str, tuple[bytes, int]], int]:
    reply = await client.range_at(keys.DESIRED)
    return {kv.key.decode(): (kv.value, kv.mod_revision) for kv in reply.kvs}, reply.header.revision


def _hosts_named(mirror: dict[str, tuple[bytes, int]]) -> set[str]:
    hosts = set()
    for key in mirror:
        if (name := keys.tail(key, keys.HOST_STATE)) is not None:
            hosts.add(name)
        elif (rest := keys.tail(key, keys.MEMBERS)) is not None and rest.count("/") == 1:
            hosts.add(rest.split("/")[1])
    return hosts


async def fleet_status(client: EtcdClient) -> dict[str, Any]:
    """Every host that has desired state or has reported, with what it says and whether it
    is alive (its lease holds) and in sync with what etcd holds for it now."""
    mirror, revision = await desired_mirror(client)
    statuses = {
        kv.key.decode().removeprefix(keys.STATUS): decode(kv.value, kv.key.decode())
        for kv in (await client.range_at(keys.STATUS)).kvs
    }
    alive = {
        kv.key.decode().removeprefix(keys.ALIVE) for kv in (await client.range_at(keys.ALIVE)).kvs
    }
    hosts = []
    for host in sorted(_hosts_named(mirror) | set(statuses) | alive):
        reported = statuses.get(host, {})
        wanted = desired_for(host, mirror)
        entry = {
            "host": host,
            "alive": host in alive,
            "desired_revision": reported.get("desired_revision"),
            "applied_revision": reported.get("applied_revision"),
            "exit_code": reported.get("exit_code"),
            "message": reported.get("message"),
            "drift": reported.get("drift"),
            "plan": reported.get("plan"),
            "probe": reported.get("probe"),
            "time": reported.get("time"),
            "etcd_revision": wanted.revision,
        }
        entry["state"] = _state(entry, wanted.valid)
        hosts.append(entry)
    return {"revision": revision, "hosts": hosts}


def _state(entry: dict[str, Any], valid: bool) -> str:
    """applied | pending | failed | invalid | unknown (never reported)."""
    if not valid:
        return "invalid"
    if entry["applied_revision"] is None:
        return "unknown"
    if entry["applied_revision"] == entry["etcd_revision"] and entry["exit_code"] == 0:
        return "applied"
    if entry["desired_revision"] == entry["etcd_revision"] and entry["exit_code"] not in (0, None):
        return "failed"
    return "pending"


async def history(client: EtcdClient, key: str, limit: int = HISTORY_LIMIT) -> list[dict[str, Any]]:
    """The versions of `key`, newest first, as far back as etcd keeps them (a compaction
    removes older ones; a deletion ends the walk)."""
    versions: list[dict[str, Any]] = []
    revision = 0
    while len(versions) < limit:
        try:
            reply = await client.get_at(key, revision)
        except aetcd.exceptions.RevisionCompactedError:
            break
        if not reply.kvs:
            break
        kv = reply.kvs[0]
        versions.append(
            {
                "revision": kv.mod_revision,
                "version": kv.version,
                "bytes": len(kv.value),
                "sha256": hashlib.sha256(kv.value).hexdigest()[:16],
                "sections": _sections_of(kv.value),
            }
        )
        if kv.version <= 1:
            break
        revision = kv.mod_revision - 1
    return versions


def _sections_of(value: bytes) -> list[str]:
    try:
        return sorted(json.loads(value).get("plugins", {}))
    except (ValueError, AttributeError, UnicodeDecodeError):
        return ["(not a state document)"]


async def rollouts_of(client: EtcdClient, group: str | None) -> list[dict[str, Any]]:
    records = [
        decode(kv.value, kv.key.decode()) for kv in (await client.range_at(keys.ROLLOUTS)).kvs
    ]
    chosen = [r for r in records if group is None or r.get("group") == group]
    return sorted(chosen, key=lambda r: r.get("started", ""), reverse=True)
