"""In-memory plugins for the engine's unit tests: three plugins named like the real ones.

Each backend is a dict resource -> value plus the set of resources op-dbus owns. A section
is `{"items": {resource: value}}`; `query()` adds `"owned": [...]`. A value of None in a
desired section means "absent" (an explicit delete). Ownership works like the contract says:
resources missing from a partial desired section are left alone; with `exhaustive` (rollback
to a checkpoint) owned resources the checkpoint lacks are deleted. The net plugin is atomic
(a failed batch leaves nothing behind, like one OVSDB transaction); the others are not.

`Faults` injects failures the engine must survive, shared by the three plugins so a failure
can be placed at any position of the whole apply. `World.partial` names plugins whose scoped
query reads only part of the host (like net without ipv4 in scope): the scope's resources and
the owned ones, not foreign resources outside the scope.
"""

from __future__ import annotations

import copy
import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar

from op_dbus.plugins.base import (
    Action,
    ActionKind,
    ApplyError,
    Availability,
    Mismatch,
    Plugin,
    Section,
    Steps,
    report,
)

NAMES = ("systemd", "net", "lxc")


@dataclass
class Store:
    data: dict[str, Any] = field(default_factory=dict)
    owned: set[str] = field(default_factory=set)


@dataclass
class Faults:
    fail_at: int | None = None
    """Index, over every action any plugin attempts, of the one that fails (once)."""
    partial: bool = False
    """The failing action takes effect before raising (non-atomic plugins only)."""
    apply_down: set[str] = field(default_factory=set)
    """Plugins whose apply raises ConnectionError once the injected failure happened."""
    query_down: set[str] = field(default_factory=set)
    """Plugins whose query raises ConnectionError once the injected failure happened."""
    query_error: set[str] = field(default_factory=set)
    """Plugins whose query always raises."""
    unavailable: set[str] = field(default_factory=set)
    undeletable: set[tuple[str, str]] = field(default_factory=set)
    """(plugin, resource) whose delete reports success but leaves the resource in place."""
    mangle: dict[tuple[str, str], Any] = field(default_factory=dict)
    """(plugin, resource) that a write sets to this value instead (a persistent mismatch)."""
    verify_lag: dict[str, int] = field(default_factory=dict)
    """Plugin -> how many verify calls still see a stale value before the backend settles."""
    read_lag: dict[str, int] = field(default_factory=dict)
    """Plugin -> how many queries after its rollback apply still read what was there before
    it (a backend that reports what it restored a moment late)."""
    stale: dict[str, dict[str, Any]] = field(default_factory=dict)
    attempts: int = 0
    failed: bool = False

    def trip(self) -> bool:
        """Count one attempted action; True when it is the one chosen to fail."""
        index, self.attempts = self.attempts, self.attempts + 1
        if index == self.fail_at:
            self.failed = True
            return True
        return False


@dataclass
class World:
    """The three backends, the faults, and a log of every call the engine made."""

    stores: dict[str, Store] = field(default_factory=lambda: {n: Store() for n in NAMES})
    faults: Faults = field(default_factory=Faults)
    partial: set[str] = field(default_factory=set)
    """Plugins whose `query(scope)` is partial: `reads_all(scope)` only without a scope."""
    dangerous: set[tuple[str, str]] = field(default_factory=set)
    """(plugin, resource) whose actions `assess` marks dangerous."""
    calls: list[tuple[str, str]] = field(default_factory=list)

    def snapshot(self) -> dict[str, tuple[dict[str, Any], set[str]]]:
        return {n: (copy.deepcopy(s.data), set(s.owned)) for n, s in self.stores.items()}

    def plugins(self) -> dict[str, MemPlugin]:
        return {cls.name: cls(self) for cls in (MemSystemd, MemNet, MemLxc)}

    def count(self, method: str) -> Counter[str]:
        return Counter(name for name, called in self.calls if called == method)


class MemPlugin(Plugin):
    atomic: ClassVar[bool] = False

    def __init__(self, world: World) -> None:
        super().__init__()
        self.world = world

    @property
    def store(self) -> Store:
        return self.world.stores[self.name]

    async def available(self) -> Availability:
        if self.name in self.world.faults.unavailable:
            return Availability(False, f"{self.name} backend socket missing")
        return Availability(True)

    async def query(self, scope: Section | None = None) -> Section:
        self.world.calls.append((self.name, "query"))
        faults = self.world.faults
        if self.name in faults.query_error or (faults.failed and self.name in faults.query_down):
            raise ConnectionError(f"{self.name} backend down")
        items = self.store.data
        if faults.read_lag.get(self.name, 0) > 0 and self.name in faults.stale:
            faults.read_lag[self.name] -= 1
            items = faults.stale[self.name]
        if not self.reads_all(scope):
            assert scope is not None
            wanted = set(scope.get("items", {})) | self.store.owned
            items = {r: v for r, v in items.items() if r in wanted}
        return {"items": copy.deepcopy(items), "owned": sorted(self.store.owned)}

    def reads_all(self, scope: Section | None) -> bool:
        return scope is None or self.name not in self.world.partial

    def diff(
        self, current: Section, desired: Section, *, exhaustive: bool = False, prune: bool = False
    ) -> list[Action]:
        have: dict[str, Any] = current.get("items", {})
        want: dict[str, Any] = desired.get("items", {})
        owned = set(current.get("owned", ()))
        drop = sorted(r for r, v in want.items() if v is None and r in have)
        if exhaustive or prune:
            drop += sorted(r for r in have if r not in want and r in owned)
        deletes = [Action(self.name, ActionKind.DELETE, r, have[r], None) for r in drop]
        creates = [
            Action(self.name, ActionKind.CREATE, r, None, v)
            for r, v in sorted(want.items())
            if v is not None and r not in have
        ]
        modifies = [
            Action(self.name, ActionKind.MODIFY, r, have[r], v)
            for r, v in sorted(want.items())
            if v is not None and r in have and have[r] != v
        ]
        return deletes + creates + modifies

    async def assess(self, current: Section, actions: list[Action]) -> list[Action]:
        return [
            dataclasses.replace(a, dangerous=("marked dangerous by the test",))
            if (self.name, a.resource) in self.world.dangerous
            else a
            for a in actions
        ]

    async def apply(self, actions: list[Action], steps: Steps | None = None) -> list[Action]:
        self.world.calls.append((self.name, "apply"))
        faults = self.world.faults
        if faults.failed and self.name in faults.apply_down:
            raise ConnectionError(f"{self.name} backend down")
        if faults.failed:  # the rollback's apply
            faults.stale.setdefault(self.name, copy.deepcopy(self.store.data))
        target = copy.deepcopy(self.store) if self.atomic else self.store
        done: list[Action] = []
        for action in actions:
            if faults.trip():
                if faults.partial and not self.atomic:
                    self._write(target, action, done)
                raise ApplyError(action, "injected failure", [] if self.atomic else done)
            report(steps, [action], False)
            self._write(target, action, done)
            done.append(action)
            report(steps, [action], True)
        if self.atomic:
            self.world.stores[self.name] = target
        return done

    def _write(self, store: Store, action: Action, done: list[Action]) -> None:
        """Carry out one action, refusing what a real backend refuses."""
        exists = action.resource in store.data
        if exists == (action.kind == ActionKind.CREATE):
            state = "exists" if exists else "does not exist"
            raise ApplyError(action, f"{action.resource} {state}", done)
        key = (self.name, action.resource)
        if action.kind == ActionKind.DELETE:
            if key not in self.world.faults.undeletable:
                del store.data[action.resource]
                store.owned.discard(action.resource)
            return
        store.data[action.resource] = self.world.faults.mangle.get(key, action.after)
        if action.kind == ActionKind.CREATE:
            store.owned.add(action.resource)

    async def verify(self, desired: Section) -> list[Mismatch]:
        self.world.calls.append((self.name, "verify"))
        lag = self.world.faults.verify_lag
        data = self.store.data
        found = []
        for resource, value in sorted(desired.get("items", {}).items()):
            if value is None and resource in data:
                found.append(Mismatch(resource, "present", False, True))
            elif value is not None and data.get(resource) != value:
                found.append(Mismatch(resource, "value", value, data.get(resource)))
        if lag.get(self.name, 0) > 0 and not found:
            lag[self.name] -= 1
            resource = sorted(desired.get("items", {}))[0]
            found.append(Mismatch(resource, "value", "settled", "settling"))
        return found


class MemSystemd(MemPlugin):
    name = "systemd"


class MemNet(MemPlugin):
    name = "net"
    atomic = True


class MemLxc(MemPlugin):
    name = "lxc"
