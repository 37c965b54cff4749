"""The one list of state sections: each one's plugin, mode, ordering and daemon watcher.

A new plugin is one package under plugins/ and one line in `SPECS`. Everything that needs to
know the sections (the modes, the engine's order, `init`, the daemon's watchers) reads them
here. A leaf: it imports nothing of op_dbus, names plugin classes and watcher factories by
import path ("module:attribute"), and the plugins package imports them only when asked for,
so `op-dbus --help` stays fast and model/ may read the modes from here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

MODES: tuple[str, ...] = ("agent", "standalone", "full")
"""The run modes from the least privileged up; each allows the sections of those before it."""


@dataclass(frozen=True)
class SectionSpec:
    """What the rest of op-dbus knows about one state section."""

    name: str
    mode: str
    """The least-privileged mode that allows this section (one of MODES)."""
    plugin: str
    """"module:Class" of its Plugin."""
    watcher: str
    """"module:function" of its daemon watcher factory (plugins.base.WatcherFactory)."""
    empty: Mapping[str, Any]
    """The section `op-dbus init` writes: declares nothing."""
    after: tuple[str, ...] = ()
    """Sections whose creates run before this one's (and whose deletes run after)."""
    atomic: bool = False
    """Its apply lands all-or-nothing in the backend (net: one OVSDB transaction)."""
    reversible: bool = True
    """Everything its apply does can be undone by applying the checkpoint back."""
    one_batch: bool = False
    """Its actions run as one apply call, deletes and creates together (for `atomic`)."""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"section {self.name}: mode {self.mode!r} is not one of {MODES}")
        object.__setattr__(self, "empty", MappingProxyType(dict(self.empty)))


SPECS: tuple[SectionSpec, ...] = (
    SectionSpec(
        "systemd", "agent", "op_dbus.plugins.systemd.plugin:SystemdPlugin",
        "op_dbus.plugins.systemd.watcher:watches", {"units": {}},
    ),
    SectionSpec(
        "net", "standalone", "op_dbus.plugins.net.plugin:NetPlugin",
        "op_dbus.plugins.net.watcher:watches", {"interfaces": []},
        after=("systemd",), atomic=True, one_batch=True,
    ),
    SectionSpec(
        "lxc", "full", "op_dbus.plugins.lxc.plugin:LxcPlugin",
        "op_dbus.plugins.lxc.watcher:watches", {"containers": []},
        after=("net",), reversible=False,  # a destroyed container's rootfs is gone
    ),
    SectionSpec(
        "firewall", "standalone", "op_dbus.plugins.firewall.plugin:FirewallPlugin",
        "op_dbus.plugins.firewall.watcher:watches", {},
        after=("net",), atomic=True,  # one nft transaction; the sysctl is restored on rollback
    ),
)  # fmt: skip


def topological(specs: Iterable[SectionSpec]) -> tuple[SectionSpec, ...]:
    """`specs` with every section after those it names in `after`; otherwise in the order
    given (so the order is stable). Raises ValueError on an unknown name or a cycle."""
    pending = {spec.name: spec for spec in specs}
    for spec in pending.values():
        unknown = [name for name in spec.after if name not in pending]
        if unknown:
            raise ValueError(f"section {spec.name}: after unknown {', '.join(unknown)}")
    done: dict[str, SectionSpec] = {}
    while pending:
        ready = next((s for s in pending.values() if set(s.after) <= done.keys()), None)
        if ready is None:
            raise ValueError(f"sections {', '.join(pending)} depend on each other in a cycle")
        done[ready.name] = pending.pop(ready.name)
    return tuple(done.values())


@dataclass(frozen=True)
class Registry:
    """Sections in dependency order, with what is derived from them."""

    specs: tuple[SectionSpec, ...]
    by_name: Mapping[str, SectionSpec] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "specs", topological(self.specs))
        object.__setattr__(self, "by_name", {spec.name: spec for spec in self.specs})
        for spec in self.specs:
            clash = [n for n in self.depends_on(spec.name) if self.by_name[n].one_batch]
            if spec.one_batch and clash:
                raise ValueError(
                    f"sections {spec.name} and {', '.join(clash)} both run as one batch, but one"
                    " comes after the other: its deletes could not run before theirs"
                )

    @property
    def order(self) -> tuple[str, ...]:
        """Section names in dependency order: creates run in it, deletes in reverse."""
        return tuple(spec.name for spec in self.specs)

    def sections_for(self, mode: str) -> tuple[str, ...]:
        """The sections `mode` allows, in dependency order."""
        rank = MODES.index(mode)
        return tuple(s.name for s in self.specs if MODES.index(s.mode) <= rank)

    def depends_on(self, name: str) -> frozenset[str]:
        """Every section `name` comes after, directly or through others."""
        found: set[str] = set()
        todo = list(self.by_name[name].after)
        while todo:
            if (other := todo.pop()) not in found:
                found.add(other)
                todo.extend(self.by_name[other].after)
        return frozenset(found)


REGISTRY = Registry(SPECS)
ORDER: tuple[str, ...] = REGISTRY.order
