"""The fleet agent: one more front end of the host's transaction service.

It keeps a mirror of the desired keys (one consistent read, then one watch of the DESIRED
prefix from the revision after it), computes this host's desired state on every change of
its inputs, and applies it through the API as a try: the probes pass, it confirms; they
fail, it rolls back, and that revision is not tried again. Its status is published under the
host's own keys, liveness under a lease. With etcd unreachable nothing stops: the daemon
keeps enforcing what was applied last, and the agent reconnects with backoff and resumes the
watch from the last revision it saw (a compacted one: it reads everything again).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import aetcd.exceptions

from op_dbus.engine.options import ApplyOptions
from op_dbus.errors import OpError
from op_dbus.exitcodes import ExitCode
from op_dbus.fleet import keys
from op_dbus.fleet.desired import Desired, desired_for
from op_dbus.fleet.probe import ProbeOptions, default_gateways, run_probes
from op_dbus.fleet.publish import publish_checkpoint
from op_dbus.fleet.store import EtcdClient, EtcdOptions, Unavailable, connected, encode
from op_dbus.ledger.entries import now_text
from op_dbus.model import Mode

log = logging.getLogger("op_dbus.fleet")

ACTOR = "op-dbus-fleet"
MEMORY_FILE = "fleet-agent.json"
BACKOFF_MAX = 30.0
RETRY_DELAY = 5.0
"""Seconds after which a change that could not be made now (refused, a backend away) is
tried again."""


class FleetHost(Protocol):
    """What the agent asks of its host: `op_dbus.api.HostApi`'s calls, where a change
    replaces the fleet's previous desired state (the daemon's FleetApi)."""

    async def apply(self, sections: dict[str, Any], options: ApplyOptions) -> dict[str, Any]: ...

    async def confirm(self, *, actor: str) -> dict[str, Any]: ...

    async def rollback(self, *, actor: str) -> dict[str, Any]: ...

    async def status(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class AgentOptions:
    host: str
    etcd: EtcdOptions
    data_dir: str
    mode: Mode | None = None
    lease_ttl: int = 15
    try_seconds: int = 60
    """The try's own deadline: should the agent die between apply and probe, the Host
    rolls the change back by itself."""
    probe: ProbeOptions = field(default_factory=ProbeOptions)


@dataclass
class Memory:
    """What survives a restart: the revision applied last, the one that failed last."""

    path: Path
    applied_revision: int = 0
    failed_revision: int = 0
    sections: dict[str, Any] = field(default_factory=dict)
    """The state applied last: enforced at start, before etcd is reached."""

    @classmethod
    def load(cls, data_dir: str) -> Memory:
        path = Path(data_dir) / MEMORY_FILE
        try:
            data = json.loads(path.read_text())
            sections = data.get("sections") or {}
            if not isinstance(sections, dict):
                raise TypeError("sections")
            return cls(path, int(data["applied_revision"]), int(data["failed_revision"]), sections)
        except (OSError, ValueError, KeyError, TypeError):
            return cls(path)

    def save(self) -> None:
        """Written whole or not at all (a new file renamed over the old)."""
        tmp = self.path.with_suffix(".tmp")
        data = {
            "applied_revision": self.applied_revision,
            "failed_revision": self.failed_revision,
            "sections": self.sections,
        }
        tmp.write_text(json.dumps(data) + "\n")
        tmp.replace(self.path)


class Agent:
    def __init__(self, api: FleetHost, options: AgentOptions) -> None:
        self.api = api
        self.options = options
        self.host = options.host
        self.memory = Memory.load(options.data_dir)
        self.mirror: dict[str, tuple[bytes, int]] = {}
        self.revision = 0
        """The etcd revision the mirror is complete up to."""
        self.handled = -1
        """The desired revision converged on last in this process (-1: none yet)."""
        self.report: dict[str, Any] = {
            "host": self.host,
            "desired_revision": 0,
            "applied_revision": self.memory.applied_revision,
            "exit_code": None,
            "message": "starting",
            "plan": None,
            "probe": None,
            "rollouts": {},
        }
        self._wake = asyncio.Event()
        self._dirty = asyncio.Event()
        self._dirty.set()
        self.ledger_changed = True

    def changed(self, *_: object) -> None:
        """Something worth publishing happened (drift, a repair): publish the status, and
        the ledger's checkpoint if a repair made a new one."""
        self.ledger_changed = True
        self._dirty.set()

    # -- life --------------------------------------------------------------------------
    async def run(self) -> None:
        """Until cancelled: the remembered state enforced first (etcd may be unreachable),
        then sessions with etcd, with backoff between them. The converger outlives the
        sessions: a lost connection never cancels a change half-way."""
        await self._guarded(self._enforce_remembered(), self.memory.applied_revision)
        converger = asyncio.create_task(self._converger())
        try:
            await self._sessions()
        finally:
            converger.cancel()
            await asyncio.gather(converger, return_exceptions=True)

    async def _sessions(self) -> None:
        delay = 0.5
        while True:
            started = time.monotonic()
            try:
                async with connected(self.options.etcd) as client:
                    await self._session(client)
            except (OpError, *Unavailable, aetcd.exceptions.ClientError) as err:
                text = getattr(err, "message", None) or str(err).splitlines()[0][:200]
                log.warning(
                    "fleet: etcd session ended (%s); the last applied state stays enforced; "
                    "reconnecting in %.1f s",
                    text,
                    delay,
                )
            except Exception:  # a bug must not end the agent; the daemon enforces meanwhile
                log.exception("fleet: etcd session failed; reconnecting in %.1f s", delay)
            if time.monotonic() - started > BACKOFF_MAX:
                delay = 0.5  # a session that lasted: start the backoff over
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, BACKOFF_MAX)

    async def _enforce_remembered(self) -> None:
        """After a restart: the state applied last, enforced again before etcd answers."""
        if not self.memory.sections:
            return
        desired = Desired(self.host, self.memory.sections, self.memory.applied_revision)
        if await self.converge(desired) == ExitCode.OK:
            self.handled = desired.revision  # the same revision from etcd: nothing to do

    async def _session(self, client: EtcdClient) -> None:
        """Liveness, publishing and the watch; whichever ends first ends the session."""
        lease = await client.lease(self.options.lease_ttl)
        alive = {"pid": os.getpid(), "since": now_text(), "ttl": self.options.lease_ttl}
        await client.put(keys.alive(self.host).encode(), encode(alive), lease=lease)
        self._dirty.set()  # what could not be published in the last session, now
        self.ledger_changed = True
        tasks = [
            asyncio.create_task(self._keepalive(client, lease.id)),
            asyncio.create_task(self._publisher(client)),
            asyncio.create_task(self._follow(client)),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # its error ends the session
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _follow(self, client: EtcdClient) -> None:
        """The one watch of the desired keys, again after a compaction."""
        while True:
            stream = await self._watch(client)
            self._wake.set()
            try:
                await self._consume(stream)
                raise OpError("the watch ended")
            except aetcd.exceptions.RevisionCompactedError as err:
                log.info("fleet: revision %d compacted (%s): reading again", self.revision, err)
                self.revision = 0
            finally:
                with contextlib.suppress(Exception):
                    await stream.cancel()

    async def _watch(self, client: EtcdClient) -> Any:
        """The one watch: from the revision after the mirror, or after a fresh read."""
        if self.revision:
            try:
                return await client.watch_prefix(
                    keys.DESIRED.encode(), start_revision=self.revision + 1
                )
            except aetcd.exceptions.RevisionCompactedError as err:
                log.info("fleet: revision %d compacted (%s): reading again", self.revision, err)
        await self._read(client)
        return await client.watch_prefix(keys.DESIRED.encode(), start_revision=self.revision + 1)

    async def _read(self, client: EtcdClient) -> None:
        reply = await client.range_at(keys.DESIRED)
        self.mirror = {kv.key.decode(): (kv.value, kv.mod_revision) for kv in reply.kvs}
        self.revision = reply.header.revision

    async def _consume(self, stream: Any) -> None:
        """Feed the mirror. Every event of one etcd revision arrives before the converger
        runs again (aetcd queues a whole response at once), so a transaction is seen whole."""
        async for event in stream:
            key = event.kv.key.decode()
            if event.kind == "PUT":
                self.mirror[key] = (event.kv.value, event.kv.mod_revision)
            else:
                self.mirror.pop(key, None)
            self.revision = max(self.revision, event.kv.mod_revision)
            self._wake.set()

    async def _keepalive(self, client: EtcdClient, lease_id: int) -> None:
        while True:
            await asyncio.sleep(self.options.lease_ttl / 3)
            reply = await client.refresh_lease(lease_id)
            if reply is None or reply.TTL <= 0:
                raise OpError("the liveness lease expired")

    async def _publisher(self, client: EtcdClient) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            status = dict(self.report)
            try:
                host_status = await self.api.status()
            except OpError as err:
                host_status = {"error": err.message}
            status["drift"] = host_status.get("drift")
            status["try"] = host_status.get("try")
            status["time"] = now_text()
            await client.put(keys.status(self.host).encode(), encode(status))
            if self.ledger_changed:
                self.ledger_changed = False
                await publish_checkpoint(client, self.host, self.options.data_dir)

    # -- converging ----------------------------------------------------------------------
    async def _converger(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self.revision:  # etcd not read (yet, or again): the remembered state holds
                if self.handled == -1 and self.memory.sections:
                    await self._guarded(self._enforce_remembered(), self.memory.applied_revision)
                continue
            desired = desired_for(self.host, self.mirror, self.options.mode)
            if desired.revision == self.handled:
                continue  # an event about other hosts or groups
            self.handled = desired.revision
            await self._guarded(self.converge(desired), desired.revision)
            self._dirty.set()

    async def _guarded(self, work: Awaitable[object], revision: int) -> None:
        try:
            await work
        except Exception:  # a bug or a backend surprise must not end the agent
            log.exception("fleet: converging on revision %d failed", revision)

    async def converge(self, desired: Desired) -> int | None:
        """Reach `desired`; the report changes in one step at the end, so a status published
        meanwhile never pairs the new revision with the old outcome. Returns the exit code."""
        tried = desired.revision != self.memory.applied_revision
        outcome = await self._outcome(desired)
        code = outcome["exit_code"]
        if outcome.pop("retry", False) or code in (ExitCode.UNEXPECTED, ExitCode.COMPONENT_MISSING):
            # busy, a try of someone else's pending, a backend away: look again later
            self.handled = -1
            asyncio.get_running_loop().call_later(RETRY_DELAY, self._wake.set)
        if code == ExitCode.OK:
            self.memory.applied_revision = desired.revision
            self.memory.sections = desired.sections
        elif tried and code in (ExitCode.ROLLED_BACK, ExitCode.ROLLBACK_FAILED):
            self.memory.failed_revision = desired.revision  # not tried again
        self.memory.save()
        self.report.update(
            outcome,
            desired_revision=desired.revision,
            applied_revision=self.memory.applied_revision,
            rollouts=desired.rollouts,
        )
        return code

    async def _outcome(self, desired: Desired) -> dict[str, Any]:
        if not desired.valid:
            message = "desired state is not valid, nothing applied: " + "; ".join(
                desired.errors[:5]
            )
            log.error("fleet: %s", message)
            return {"exit_code": int(ExitCode.INVALID_INPUT), "message": message, "probe": None}
        if not desired.sections and not self.memory.sections:
            return {"exit_code": 0, "message": "nothing is desired for this host", "probe": None}
        if desired.revision == self.memory.failed_revision:
            return {
                "exit_code": self.report["exit_code"],
                "message": f"revision {desired.revision} failed before: not tried again",
            }
        try:
            if not desired.sections:  # no longer any fleet state: stop enforcing the last one
                result = (await self._apply(desired, None))["result"]
                message = "nothing is desired for this host: the fleet state is no longer enforced"
                return {"exit_code": result["exit_code"], "message": message, "probe": None}
            if desired.revision == self.memory.applied_revision:
                # after a restart: enforce it again, no try (a no-op when the host is as left)
                return _brief((await self._apply(desired, None))["result"])
            return await self._try(desired)
        except OpError as err:
            log.error(
                "fleet: revision %d: %s; again in %g s", desired.revision, err.message, RETRY_DELAY
            )
            return {
                "exit_code": int(err.code),
                "message": err.message,
                "probe": None,
                "retry": True,
            }

    async def _apply(self, desired: Desired, confirm_within: int | None) -> dict[str, Any]:
        actor = f"{ACTOR}:{self.host}@{desired.revision}"
        mode = str(self.options.mode or Mode.FULL)
        options = ApplyOptions(actor, mode, confirm_within=confirm_within)
        reply = await self.api.apply(desired.sections, options)
        self.report["plan"] = reply["plan"]["summary"]  # the plan of the change in flight
        if reply["plan"]["pending"]:
            self.ledger_changed = True
        return reply

    async def _try(self, desired: Desired) -> dict[str, Any]:
        """Apply as a try; confirm when the probes pass, roll back when they fail."""
        gateways = await default_gateways() if self.options.probe.gateway else []
        reply = await self._apply(desired, confirm_within=self.options.try_seconds)
        result = reply["result"]
        if result["exit_code"] != ExitCode.OK or reply["try"] is None:
            return _brief(result)  # failed and rolled back, or nothing to change
        if self.options.probe.gateway:  # the gateways it had, and those the change gave it
            gateways = sorted(set(gateways) | set(await default_gateways()))
        probe = await run_probes(gateways, self.options.probe)
        actor = f"{ACTOR}:{self.host}@{desired.revision}:probe"
        if probe.ok:
            await self.api.confirm(actor=actor)
            log.info("fleet: revision %d applied, %s", desired.revision, probe.describe())
            message = f"applied {len(result['applied'])} action(s); {probe.describe()}; confirmed"
            return {"exit_code": 0, "message": message, "probe": probe.checks}
        log.error("fleet: revision %d: %s; rolling back", desired.revision, probe.describe())
        back = (await self.api.rollback(actor=actor))["result"]
        code = back["exit_code"] if back["exit_code"] != ExitCode.OK else ExitCode.ROLLED_BACK
        message = f"{probe.describe()}: {back['message']}"
        return {"exit_code": int(code), "message": message, "probe": probe.checks}


def _brief(result: dict[str, Any]) -> dict[str, Any]:
    return {"exit_code": result["exit_code"], "message": result["message"], "probe": None}
