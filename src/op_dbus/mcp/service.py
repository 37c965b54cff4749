"""What the MCP tools do, over the one API: no MCP types here, only requests and JSON replies.

Every call goes to `HostApi` (the daemon's Host or a local one); this module parses and
bounds the agent's input, keeps the plans it was shown (`PlanBook`), enforces the server's
write policy (read-only unless enabled, every write a try, dangerous actions acknowledged,
a rate limit) and renders replies. It never composes plan/apply/record itself.
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from op_dbus.engine.options import ApplyOptions
from op_dbus.engine.topology import topology
from op_dbus.errors import AccessDenied, Busy, InvalidInput, OpError, Refused
from op_dbus.mcp.plans import PlanBook, dangerous_actions, unacknowledged
from op_dbus.mcp.topology import filter_state, with_missing

if TYPE_CHECKING:
    from op_dbus.api import HostApi
    from op_dbus.endpoints import Endpoints
    from op_dbus.model import Mode
    from op_dbus.plugins.base import Section

MAX_DOCUMENT = 1024 * 1024
"""Bytes of one state document an agent may send (the HTTP body bound is the outer one)."""
RUNTIME_MAX = 16 * 1024 * 1024
"""Bytes of the daemon's runtime changes file the page reads for its drift marks."""
TRY_DEFAULT = 120
TRY_MIN, TRY_MAX = 10, 3600
"""An MCP write is always a try: long enough for an agent to check and confirm, short
enough that a lost connection does not leave an unchecked change for long."""
WRITES_PER_MINUTE = 6


@dataclass(frozen=True)
class McpOptions:
    allow_write: bool = False
    mode: Mode | None = None
    """The mode fixed on the command line (None: each document's own)."""
    needs_root: bool = False
    """stdio acts as its caller: changes need root (the daemon checks its D-Bus callers)."""


@dataclass
class RateLimit:
    """At most `per_minute` writes per caller in any sliding minute."""

    per_minute: int = WRITES_PER_MINUTE
    _seen: dict[str, deque[float]] = field(default_factory=dict)

    def take(self, caller: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        seen = self._seen.setdefault(caller, deque())
        while seen and seen[0] <= now - 60:
            seen.popleft()
        if len(seen) >= self.per_minute:
            wait = 60 - (now - seen[0])
            raise Busy(
                f"rate limit: at most {self.per_minute} changes a minute; try again in {wait:.0f} s"
            )
        seen.append(now)


def _utc(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _ledger_line(entry: dict[str, Any]) -> dict[str, Any]:
    value = entry["entry"]
    subject = f"{value.get('plugin')}:{value.get('resource')}" if value.get("plugin") else ""
    result = value.get("result")
    if isinstance(result, dict):
        result = result.get("message") or f"exit {result.get('exit_code')}"
    return {
        "index": entry["index"],
        "time": value.get("time"),
        "type": value.get("type"),
        "kind": value.get("kind"),
        "subject": subject,
        "actor": value.get("actor"),
        "result": result,
    }


def _identity(path: str) -> tuple[int, int, int] | None:
    """What tells a file's versions apart without reading it: inode, size, mtime."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_ino, info.st_size, info.st_mtime_ns


class McpService:
    """The tools' work for one server (one API, one plan book, one rate limit)."""

    def __init__(self, api: HostApi, endpoints: Endpoints, options: McpOptions) -> None:
        self.api = api
        self.endpoints = endpoints
        self.options = options
        self.plans = PlanBook()
        self.limit = RateLimit()
        self._marks: tuple[str, dict[str, Any]] | None = None
        """The last drift plan of the live page, by what it was made from."""
        self._enforced: tuple[tuple[Any, ...], dict[str, Section] | None] | None = None
        """The last `enforced` sections, by the files' identities they were read from."""

    # -- input -----------------------------------------------------------------------------
    def parse(self, state: dict[str, Any] | str) -> tuple[dict[str, Section], str]:
        """A state document (object, or JSON/YAML text) -> (sections, mode); InvalidInput
        naming every bad field's path otherwise."""
        from op_dbus.model import StateInputError, parse_state

        text = state if isinstance(state, str) else json.dumps(state)
        if len(text.encode()) > MAX_DOCUMENT:
            raise InvalidInput(f"state: larger than {MAX_DOCUMENT} bytes")
        try:
            loaded = parse_state(text, mode=self.options.mode, origin="state")
        except StateInputError as err:
            raise InvalidInput("; ".join(str(e) for e in err.errors)) from None
        sections = loaded.state.sections()
        if not sections:
            raise InvalidInput("state: names no section (net, lxc or systemd)")
        return sections, str(loaded.mode)

    def _check_writable(self) -> None:
        if not self.options.allow_write:
            raise AccessDenied(
                "this MCP server is read-only: changes need a server started with --allow-write"
            )
        if self.options.needs_root and os.geteuid() != 0:
            raise AccessDenied(f"changes need root (this server runs as uid {os.geteuid()})")

    def _may_write(self, caller: str) -> None:
        self._check_writable()
        self.limit.take(caller)

    # -- reading ---------------------------------------------------------------------------
    async def query(self, sections: list[str] | None, names: list[str]) -> dict[str, Any]:
        from op_dbus.registry import ORDER

        unknown = sorted(set(sections or ()) - set(ORDER))
        if unknown:
            raise InvalidInput(f"sections: {', '.join(unknown)} is not one of {', '.join(ORDER)}")
        reply = await self.api.query(sections or ORDER)
        plugins = filter_state(reply["state"]["plugins"], names)
        return {"state": {"version": 1, "plugins": plugins}, "skipped": reply["skipped"]}

    async def topology(self) -> dict[str, Any]:
        from op_dbus.registry import ORDER

        reply = await self.api.query(ORDER)
        return {**topology(reply["state"]), "skipped": reply["skipped"]}

    async def snapshot(self) -> dict[str, Any]:
        """What the live page shows: the topology with each resource's drift from what the
        daemon enforces, the pending try, the daemon's counters and the last ledger entries."""
        from op_dbus.registry import ORDER

        reply = await self.api.query(ORDER)
        status = await self.api.status()
        plan = await self._drift_plan(reply["state"], self.enforced(status))
        picture = with_missing(topology(reply["state"], plan), plan)
        try:
            entries = self.ledger_log(10, None, None)["entries"]
        except InvalidInput:  # no ledger yet
            entries = []
        daemon = status.get("daemon") or {}
        return {
            "topology": {**picture, "skipped": reply["skipped"]},
            "marked_against": daemon.get("state_file") if plan is not None else None,
            "try": status.get("try"),
            "daemon": status.get("daemon"),
            "drift": status.get("drift"),
            "last_apply": status.get("last_apply"),
            "ledger": [_ledger_line(e) for e in reversed(entries)],
        }

    async def _drift_plan(
        self, current: dict[str, Any], enforced: dict[str, Section] | None
    ) -> dict[str, Any] | None:
        """The plan of `enforced` made as the daemon looks for drift (its state is
        authoritative: pruned), made again only when the host as read or the desired state
        changed: a page looks every second. None: nothing to mark against, or the plan
        failed (unmarked rather than marked wrong)."""
        if enforced is None:
            return None
        key = json.dumps([current, enforced], sort_keys=True, default=str)
        if self._marks is not None and self._marks[0] == key:
            return self._marks[1]
        try:
            plan = await self.api.plan(enforced, prune=True)
        except OpError:
            return None
        self._marks = (key, plan)
        return plan

    async def plan(self, state: dict[str, Any] | str) -> dict[str, Any]:
        sections, mode = self.parse(state)
        plan = await self.api.plan(sections)
        if plan["summary"]["blocked"]:  # nothing to apply: no id to apply it by
            blocked = [p for p in plan["plugins"] if p["status"] != "ready"]
            reasons = "; ".join(f"{p['name']}: {p['reason']}" for p in blocked)
            return {**self._plan_reply(None, plan), "mode": mode, "not_appliable": reasons}
        shown = self.plans.add(sections, mode, plan, dangerous_actions(plan))
        return {
            **self._plan_reply(shown.plan_id, plan),
            "mode": mode,
            "expires": _utc(shown.expires()),
        }

    def _plan_reply(self, plan_id: str | None, plan: dict[str, Any]) -> dict[str, Any]:
        from op_dbus.cli.render import plan_text

        return {
            "plan_id": plan_id,
            "revision": plan["revision"],
            "pending": plan["pending"],
            "summary": plan["summary"],
            "dangerous": dangerous_actions(plan),
            "text": plan_text(plan),
            "plan": plan,
        }

    async def verify(self, state: dict[str, Any] | str) -> dict[str, Any]:
        sections, _ = self.parse(state)
        reply = await self.api.verify(sections)
        return {**reply, "matches": not reply["blocked"] and not reply["mismatches"]}

    async def status(self) -> dict[str, Any]:
        return {
            **(await self.api.status()),
            "mcp": {"via": self.api.via, "writes": self.options.allow_write},
        }

    async def desired(self) -> dict[str, Any]:
        """What the daemon enforces: its state file with its runtime changes laid over it
        (they are listed too); the file alone when those cannot be read as the daemon has
        them."""
        status = await self.api.status()
        daemon = status.get("daemon") or {}
        path = daemon.get("state_file")
        if not path:
            return {"state_file": None, "state": None, "runtime_changes": []}
        sections = self.enforced(status) or self._state_file(path)
        return {
            "state_file": path,
            "state": {"version": 1, "plugins": sections},
            "runtime_changes": status.get("runtime_changes") or [],
        }

    def _state_file(self, path: str) -> dict[str, Section]:
        from op_dbus.model import StateInputError, load_state

        try:
            loaded = load_state(path, mode=self.options.mode)
        except StateInputError as err:
            raise InvalidInput("; ".join(str(e) for e in err.errors)) from None
        return loaded.state.sections()

    def enforced(self, status: dict[str, Any]) -> dict[str, Section] | None:
        """The sections the daemon of `status` enforces: its state file with its runtime
        changes laid over it (read from its data dir, as the daemon keeps them). None: no
        daemon, no state file, or it cannot be read as the daemon has it. Read again only
        when one of the two files changed: the live page asks every second."""
        from op_dbus.daemon.runtime import FILE_NAME

        path = (status.get("daemon") or {}).get("state_file")
        if not path:
            return None
        listed = status.get("runtime_changes") or []
        runtime = os.path.join(self.endpoints.data_dir, FILE_NAME)
        key = (path, _identity(path), _identity(runtime) if listed else None, len(listed))
        if self._enforced is None or self._enforced[0] != key:
            self._enforced = (key, self._read_enforced(path, runtime, len(listed)))
        return self._enforced[1]

    def _read_enforced(self, path: str, runtime: str, listed: int) -> dict[str, Section] | None:
        from op_dbus.daemon.runtime import RuntimeChanges
        from op_dbus.model import StateInputError
        from op_dbus.model.load import read_document

        try:
            sections = self._state_file(path)
        except InvalidInput:
            return None
        if not listed:
            return sections
        try:
            saved = json.loads(read_document(runtime, RUNTIME_MAX))
            changes = [c for c in saved["changes"] if isinstance(c, dict) and "sections" in c]
        except (StateInputError, ValueError, KeyError, TypeError):
            return None
        if len(changes) != listed:  # not what the daemon holds (being written?)
            return None
        return RuntimeChanges(Path(runtime), saved.get("base"), changes).desired(sections)

    async def explain_drift(self, state: dict[str, Any] | str | None) -> dict[str, Any]:
        if state is None:
            desired = (await self.desired())["state"]
            if desired is None:
                raise InvalidInput(
                    "state: no daemon enforces a state file here: give the state to compare with"
                )
            state = desired
        sections, _ = self.parse(state)
        verification = await self.api.verify(sections)
        plan = await self.api.plan(sections)
        status = await self.api.status()
        lines = [
            f"{name} {m['resource']}: {m['field']} is {json.dumps(m['actual'])}, "
            f"expected {json.dumps(m['expected'])}"
            for name, items in verification["mismatches"].items()
            for m in items
        ]
        lines += [
            f"{name}: cannot be checked: {why}" for name, why in verification["blocked"].items()
        ]
        daemon = status.get("daemon")
        if daemon is not None and lines:
            lines.append(
                "the daemon repairs drift of its state file by itself"
                if daemon.get("policy") == "enforce"
                else "the daemon only reports drift (policy observe): `plan` then `apply_plan`"
            )
        return {
            "drift": bool(verification["mismatches"]),
            "explanation": lines,
            "mismatches": verification["mismatches"],
            "blocked": verification["blocked"],
            "repair": self._plan_reply(None, plan),
            "daemon": None if daemon is None else {**daemon, "drift": status.get("drift")},
        }

    async def doctor(self, mode: str) -> dict[str, Any]:
        from op_dbus.doctor import run_doctor
        from op_dbus.model import Mode

        try:
            chosen = Mode(mode)
        except ValueError:
            raise InvalidInput("mode: must be agent, standalone or full") from None
        return (await run_doctor(chosen, self.endpoints)).to_dict()

    # -- changing --------------------------------------------------------------------------
    def to_consent(self, plan_id: str, acknowledge: list[str]) -> dict[str, tuple[str, ...]]:
        """The dangerous actions of plan `plan_id` that `acknowledge` leaves out, with their
        reasons: what the user may be asked to consent to. Empty when there is nothing to
        ask: none left out, or the call is refused anyway (read-only, unknown plan id)."""
        try:
            self._check_writable()
            shown = self.plans.get(plan_id)
        except (AccessDenied, InvalidInput):
            return {}
        return {item: shown.reasons.get(item, ()) for item in unacknowledged(shown, acknowledge)}

    async def apply_shown(
        self,
        plan_id: str,
        confirm_within: int,
        acknowledge: list[str],
        *,
        actor: str,
        caller: str,
        consent: str | None = None,
    ) -> dict[str, Any]:
        """Apply plan `plan_id` as a try. Its dangerous actions must be in `acknowledge`, or
        `consent` is the user's answer when asked about the ones left out (`accept`,
        `decline`, `cancel`; None: nobody was asked): accepted, those are acknowledged."""
        self._may_write(caller)
        shown = self.plans.get(plan_id)
        if not TRY_MIN <= confirm_within <= TRY_MAX:
            raise InvalidInput(f"confirm_within: must be from {TRY_MIN} to {TRY_MAX} seconds")
        missing = unacknowledged(shown, acknowledge)
        if missing and consent == "accept":
            acknowledge = [*acknowledge, *missing]
        elif missing:
            why = (
                "pass them in `acknowledge`"
                if consent is None
                else f"the user was asked and answered {consent}; nothing was changed"
            )
            raise Refused(
                f"plan {plan_id}",
                f"dangerous actions need acknowledging: {why}: " + ", ".join(missing),
            )
        options = ApplyOptions(
            actor,
            shown.mode,
            confirm_within=confirm_within,
            expect_revision=shown.revision,
            acknowledge=tuple(acknowledge),  # the engine checks them again, against its plan
        )
        reply = await self.api.apply(shown.sections, options)
        self.plans.drop(plan_id)
        pending = reply.get("try")
        next_step = (
            f"call `confirm` within {pending['seconds_left']:g} s to keep it, or `rollback`"
            if pending
            else None
        )
        return {**reply, "next": next_step}

    async def confirm(self, *, actor: str, caller: str) -> dict[str, Any]:
        self._may_write(caller)
        return await self.api.confirm(actor=actor)

    async def rollback(self, *, actor: str, caller: str) -> dict[str, Any]:
        self._may_write(caller)
        return await self.api.rollback(actor=actor)

    # -- the ledger (a leaf: read directly, like `op-dbus ledger`) --------------------------
    def _ledger(self) -> Any:
        import sqlite3

        from op_dbus.ledger.store import Ledger, LedgerMissing

        data_dir = self.endpoints.data_dir
        try:
            return Ledger.open(data_dir, readonly=True)
        except LedgerMissing:
            raise InvalidInput(f"no ledger in {data_dir} (nothing applied yet?)") from None
        except (OSError, sqlite3.Error) as err:
            raise InvalidInput(f"cannot open the ledger in {data_dir}: {err}") from None

    def ledger_log(self, count: int, plugin: str | None, since: str | None) -> dict[str, Any]:
        from op_dbus.ledger.entries import TIME_FORMAT
        from op_dbus.ledger.views import entry_json

        after = None
        if since is not None:
            try:
                moment = datetime.fromisoformat(since)
            except ValueError:
                raise InvalidInput(f"since: not an ISO 8601 date or time: {since!r}") from None
            moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
            after = moment.astimezone(UTC).strftime(TIME_FORMAT)
        with self._ledger() as ledger:
            entries = ledger.search(last=count, plugin=plugin, since=after)
            return {"size": ledger.size(), "entries": [entry_json(e) for e in entries]}

    def ledger_verify(self) -> dict[str, Any]:
        from op_dbus.ledger.views import report_json

        with self._ledger() as ledger:
            return {**report_json(ledger.verify()), "public_key": ledger.public_key()}

    def ledger_proof(self, index: int, size: int | None) -> dict[str, Any]:
        from op_dbus.ledger import merkle
        from op_dbus.ledger.store import LedgerError
        from op_dbus.ledger.views import inclusion_json

        with self._ledger() as ledger:
            try:
                return inclusion_json(ledger, index, size)
            except LedgerError as err:
                raise InvalidInput(str(err)) from None
            except merkle.ProofError as err:
                raise Refused("ledger", f"the stored tree is damaged ({err})") from None

    def checkpoint(self) -> dict[str, Any]:
        from op_dbus.ledger.checkpoint import CheckpointError, open_checkpoint
        from op_dbus.ledger.views import b64

        with self._ledger() as ledger:
            note, key = ledger.latest_checkpoint(), ledger.public_key()
        if note is None:
            return {"note": None, "public_key": key}
        try:
            signed = open_checkpoint(note, key)
        except CheckpointError as err:
            raise Refused("ledger", f"the latest checkpoint does not verify: {err}") from None
        return {"note": note, "size": signed.size, "root": b64(signed.root), "public_key": key}
