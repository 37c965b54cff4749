"""The lxc plugin: containers, each with one veth whose host end sits on an Open vSwitch bridge.

The container manager is behind a driver (native/lxc.py): liblxc's tools here, Proxmox's
`pct` where it exists. Ports are attached by liblxc's own hooks at every start (see
native/lxc_config.py); this plugin moves them live when a running container changes bridge
or lost its port, and removes ports a dead container left behind. docs/lxc.md has the rules.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any, ClassVar

from op_dbus.endpoints import Endpoints
from op_dbus.errors import Refused
from op_dbus.model.state import BRIDGE_TYPE
from op_dbus.native.lxc import Driver, LxcCliDriver, LxcError, Observed, PctDriver, host_links
from op_dbus.native.lxc_config import DEFAULT_TEMPLATE, Nic, Spec, UnsafeValue
from op_dbus.native.ovsdb import OvsdbClient, OvsdbError, OvsdbLink
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
from op_dbus.plugins.lxc.diff import RESTART_FIELDS, container_name, diff_lxc, nics_of
from op_dbus.plugins.lxc.ovs import (
    PortRow,
    attach,
    detach,
    read_bridges,
    read_ports,
    set_protected,
)


@dataclass
class LxcPlugin(Plugin):
    name: ClassVar[str] = "lxc"
    driver: Driver | None = None
    _link: OvsdbLink = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._link = OvsdbLink(self.endpoints.ovsdb)

    def _driver(self) -> Driver:
        if self.driver is None:
            self.driver = choose_driver(self.endpoints)
        return self.driver

    async def _ovsdb(self) -> OvsdbClient:
        return await self._link.client()

    async def available(self) -> Availability:
        if self.driver is None and not (shutil.which("pct") or shutil.which("lxc-ls")):
            return Availability(False, "neither pct nor lxc-ls found (install the lxc package)")
        problem = await self._link.problem()
        return Availability(problem is None, problem or "")

    async def close(self) -> None:
        await self._link.close()

    async def query(self, scope: Section | None = None) -> Section:
        """Every container (others' marked `owned: false`), and stale container ports.

        Whatever the scope: stale ports belong to containers the file may not name."""
        observed = await self._driver().list()
        ports = await read_ports(await self._ovsdb())
        containers = [container_entry(o, ports) for o in observed]
        live = {
            (o.name, veth)
            for o in observed
            if o.running
            for veth in (o.config.veth, *(nic.veth for nic in o.config.more_nics))
        }
        stale = [
            {"name": p.name, "bridge": p.bridge, "container": p.container}
            for p in sorted(ports.values(), key=lambda p: p.name)
            if p.container is not None and (p.container, p.name) not in live
        ]
        return {"containers": containers, "stale_ports": stale}

    async def check(
        self, current: Section, desired: Section, document: Mapping[str, Section]
    ) -> None:
        """Refuse what would only fail at apply: a veth named like a device the host has
        (other than the container's own, from an earlier run), or a bridge that neither the
        host nor the file's net section has."""
        have = {c["name"]: c for c in current.get("containers") or []}
        veth_of = {n["veth"]: c["name"] for c in have.values() for n in nics_of(c) if n.get("veth")}
        links = host_links()
        wanted = [c for c in desired.get("containers") or [] if c.get("state") != "absent"]
        for want in wanted:
            name = container_name(want)
            own = {n.get("veth") for n in nics_of(have.get(name) or {})}
            for veth in (n.get("veth") for n in nics_of(want)):
                if veth and veth not in own and veth_of.get(veth, name) != name:
                    raise Refused(
                        f"container/{name}", f"veth {veth} is container {veth_of[veth]}'s"
                    )
                if veth and veth not in own and veth in links:
                    raise Refused(
                        f"container/{name}", f"veth {veth}: the host already has a device {veth}"
                    )
        declared = {
            i["name"]
            for i in (document.get("net") or {}).get("interfaces") or []
            if i.get("type") == BRIDGE_TYPE and i.get("state") != "absent"
        }
        needed = {
            nic["bridge"]: container_name(c)
            for c in wanted
            for nic in nics_of(c)
            if nic.get("bridge")
        }
        missing = set(needed) - declared
        if missing:
            missing -= await read_bridges(await self._ovsdb())
        for bridge in sorted(missing):
            raise Refused(
                f"container/{needed[bridge]}",
                f"bridge {bridge} is neither on the host nor declared in the file's net section",
            )

    def diff(
        self, current: Section, desired: Section, *, exhaustive: bool = False, prune: bool = False
    ) -> list[Action]:
        return diff_lxc(current, desired, exhaustive=exhaustive)

    async def assess(self, current: Section, actions: list[Action]) -> list[Action]:
        """Destroying a container destroys its root filesystem: the user's data."""
        return [
            dataclasses.replace(
                a, dangerous=(f"destroys container {a.before['name']} and its root filesystem",)
            )
            if a.kind == ActionKind.DELETE and a.resource.startswith("container/")
            else a
            for a in actions
        ]

    async def apply(self, actions: list[Action], steps: Steps | None = None) -> list[Action]:
        """Each phase of the diff's order (destroys, stale ports, creates, modifies) runs its
        containers concurrently, and the next phase only after it: at most `parallelism()`
        steps that work at once (templates, destroys), at most WAITS that wait (lxc-start,
        lxc-stop). A failure starts nothing new: the actions in flight finish, and the error
        names the first failed action with every action that took effect as done."""
        done: list[Action] = []
        found: dict[str, Observed] = {}  # listed once, before the first modify
        for phase in phases(actions):
            if phase[0].kind == ActionKind.MODIFY and not found:
                try:
                    found = {o.name: o for o in await self._driver().list()}
                except (LxcError, OSError) as exc:
                    raise ApplyError(phase[0], str(exc), done) from exc
            await self._run_phase(phase, found, done, steps)
        return done

    async def _run_phase(
        self,
        phase: list[Action],
        found: dict[str, Observed],
        done: list[Action],
        steps: Steps | None,
    ) -> None:
        """Run `phase` concurrently; append what took effect to `done` (in plan order)."""
        working, waiting = asyncio.Semaphore(parallelism()), asyncio.Semaphore(WAITS)
        failures: list[tuple[int, Exception]] = []
        succeeded: set[int] = set()

        async def run(index: int, action: Action) -> None:
            started = False
            try:
                for slots, step in zip((working, waiting), self._steps(action, found), strict=True):
                    if step is None:
                        continue
                    async with slots:
                        if not started:
                            if failures:  # after a failure nothing new starts
                                return
                            started = True
                            report(steps, [action], False)
                        await step()
            except (LxcError, OvsdbError, OSError, UnsafeValue) as exc:
                failures.append((index, exc))
            else:
                succeeded.add(index)
                report(steps, [action], True)

        outcomes = await asyncio.gather(
            *(run(i, a) for i, a in enumerate(phase)), return_exceptions=True
        )
        done += [action for i, action in enumerate(phase) if i in succeeded]
        for outcome in outcomes:  # an unexpected error, once the others have finished
            if isinstance(outcome, BaseException):
                raise outcome
        if failures:
            index, exc = min(failures, key=lambda failure: failure[0])
            others = [phase[i].resource for i, _ in sorted(failures) if i != index]
            reason = str(exc) + (f" (failed as well: {', '.join(others)})" if others else "")
            raise ApplyError(phase[index], reason, done) from exc

    def _steps(self, action: Action, found: dict[str, Observed]) -> tuple[Step | None, Step | None]:
        """The action as its working step (CPU and disk: a template, a destroy) and its
        waiting step (a new container's synced config writes, lxc-start waiting for the
        container's init and hooks, lxc-stop for its shutdown), either None."""
        driver = self._driver()
        kind, name = action.kind, action.resource.split("/", 1)[1]
        if action.resource.startswith("port/"):
            return self._detach(name), None
        if kind == ActionKind.DELETE:
            if not (action.before or {}).get("owned"):  # a rollback meeting a stranger
                raise LxcError(f"container {name} was not created by op-dbus: left in place")
            return partial(driver.destroy, name), None
        if kind == ActionKind.CREATE:
            spec = spec_of(action.after)
            return partial(driver.create, spec), partial(
                self._finish, spec, bool(action.after.get("running"))
            )
        return None, partial(self._modify, name, action.after, found.get(name))

    async def _finish(self, spec: Spec, running: bool) -> None:
        """A created container's config and hooks, then its start when it is to run."""
        driver = self._driver()
        await driver.finish(spec)
        if running:
            await driver.start(spec.name, spec.veth)

    def _detach(self, port: str) -> Step:
        async def detaching() -> None:
            await detach(await self._ovsdb(), port)

        return detaching

    async def _modify(self, name: str, after: dict[str, Any], now: Observed | None) -> None:
        """Rewrite the config if a field it records changes; restart, move the port live,
        or start/stop as the change needs. `bridge` is where the running container's port
        goes; its config's bridge is `configured_bridge` when given (a rollback), else that."""
        driver = self._driver()
        if now is None:
            raise LxcError(f"container {name} no longer exists")
        configured = after.get("configured_bridge", after.get("bridge", now.config.bridge))
        spec = spec_of({**entry_of(now), **after, "bridge": configured})
        recorded = after.keys() - {"name", "running", "bridge", "configured_bridge"}
        if recorded or configured != now.config.bridge:
            await driver.configure(spec)
        running = now.running
        want = after.get("running", running)
        if running and any(key in after for key in RESTART_FIELDS):
            await driver.stop(name)
            running = False
        elif running and want and "bridge" in after and spec.veth:
            client = await self._ovsdb()
            if after["bridge"]:
                await attach(
                    client,
                    after["bridge"],
                    spec.veth,
                    name,
                    spec.protected,
                    spec.vlan,
                    spec.trunks,
                )
            else:
                await detach(client, spec.veth)
        elif running and want and "protected" in after and spec.veth:
            await set_protected(await self._ovsdb(), spec.veth, spec.protected)
        if want and not running:
            await driver.start(name, spec.veth)
        elif running and not want:
            await driver.stop(name)

    async def verify(self, desired: Section) -> list[Mismatch]:
        current = await self.query()
        return [m for action in diff_lxc(current, desired) for m in action.mismatches()]


Step = Callable[[], Awaitable[None]]

WAITS = 32
"""How many container steps that wait run at once (lxc-start, lxc-stop): they cost little
CPU while the container's init boots or shuts down, so 20 stops each waiting for a
shutdown take about as long as one (docs/lxc.md)."""


def parallelism() -> int:
    """How many container steps that work run at once (a template unpacking a root
    filesystem, a destroy): one per core, at least two."""
    return max(2, os.cpu_count() or 1)


def phases(actions: list[Action]) -> list[list[Action]]:
    """`actions` cut into runs of one phase (the same kind on the same kind of resource):
    a phase's actions are independent of each other, and each phase needs the one before
    (a container leaves a bridge before its port is removed, is created before it is
    modified)."""
    cut: list[list[Action]] = []
    for action in actions:
        phase = (action.kind, action.resource.split("/", 1)[0])
        if cut and (cut[-1][0].kind, cut[-1][0].resource.split("/", 1)[0]) == phase:
            cut[-1].append(action)
        else:
            cut.append([action])
    return cut


def choose_driver(endpoints: Endpoints) -> Driver:
    """Proxmox's pct where it exists (it owns the containers there), else liblxc's tools."""
    if shutil.which("pct"):
        return PctDriver()
    return LxcCliDriver(endpoints.lxc_path, endpoints.ovsdb)


def entry_of(observed: Observed) -> dict[str, Any]:
    """A container's declared fields as its config records them (`nics` when it has more
    than one, eth0 also in the single-NIC fields)."""
    cfg = observed.config
    single: dict[str, Any] = {
        "id": cfg.id,
        "name": observed.name,
        "veth": cfg.veth,
        "bridge": cfg.bridge,
        "template": cfg.template,
        "ipv4": _ip_entry(cfg.addresses, cfg.gateway),
        "ipv6": _ip_entry(cfg.addresses6, cfg.gateway6),
        "hwaddr": cfg.hwaddr,
        "protected": cfg.protected,
        "vlan": cfg.vlan,
        "trunks": list(cfg.trunks),
        "mtu": cfg.mtu,
        "autostart": cfg.autostart,
        "memory": cfg.memory,
        "cpus": cfg.cpus,
    }
    if cfg.more_nics:
        first = Nic(cfg.veth, cfg.bridge, cfg.hwaddr, tuple(cfg.addresses), cfg.gateway)
        first = replace(first, vlan=cfg.vlan, trunks=tuple(cfg.trunks), mtu=cfg.mtu)
        first = replace(first, addresses6=tuple(cfg.addresses6), gateway6=cfg.gateway6)
        single["nics"] = [nic_entry(nic) for nic in (first, *cfg.more_nics)]
    return single


def _ip_entry(addresses: Sequence[tuple[str, int]], gateway: str | None) -> dict[str, Any]:
    """An `ipv4` or `ipv6` entry: the addresses, and the gateway when there is one."""
    entry: dict[str, Any] = {"address": [{"ip": ip, "prefix": p} for ip, p in addresses]}
    return entry | ({"gateway": gateway} if gateway else {})


def nic_entry(nic: Nic) -> dict[str, Any]:
    """A NIC in the state file's shape."""
    return {
        "veth": nic.veth,
        "bridge": nic.bridge,
        "hwaddr": nic.hwaddr,
        "vlan": nic.vlan,
        "trunks": list(nic.trunks),
        "mtu": nic.mtu,
        "ipv4": _ip_entry(nic.addresses, nic.gateway),
        "ipv6": _ip_entry(nic.addresses6, nic.gateway6),
    }


def container_entry(observed: Observed, ports: dict[str, PortRow]) -> dict[str, Any]:
    """A container in the state file's shape plus facts (owned, pid, configured_bridge,
    incomplete and unreadable when so).
    `bridge` of a running container is where its veth really is in OVSDB (None: not
    attached); of a stopped one, the bridge it will join at start: `configured_bridge`, its
    config's, which a checkpoint needs apart (a running container's port may be missing)."""
    entry = entry_of(observed)
    if observed.running:
        port = ports.get(observed.config.veth or "")
        entry["bridge"] = port.bridge if port is not None else None
        entry["protected"] = port.protected if port is not None else observed.config.protected
        entry["vlan"] = port.vlan if port is not None else None  # what the port carries now
        entry["trunks"] = list(port.trunks) if port is not None else []
        for nic in entry.get("nics") or []:
            port = ports.get(nic["veth"] or "")
            nic["bridge"] = port.bridge if port is not None else None
            nic["vlan"] = port.vlan if port is not None else None
            nic["trunks"] = list(port.trunks) if port is not None else []
    cfg = observed.config
    facts = {
        "configured_bridge": cfg.bridge,
        "running": observed.running,
        "state": "present",
        "owned": cfg.owned,
        "pid": observed.pid,
    }
    if cfg.incomplete:
        facts["incomplete"] = True  # op-dbus's creation was cut short: the next plan finishes it
    if cfg.unreadable:
        facts["unreadable"] = cfg.unreadable
    return {**entry, **facts}


def spec_of(entry: dict[str, Any]) -> Spec:
    """The Spec of an entry; with `nics`, eth0 is its first NIC (the single-NIC fields are
    then ignored) and the others follow."""
    if entry.get("nics"):
        first, *more = entry["nics"]
        spec = spec_of({**{k: v for k, v in entry.items() if k != "nics"}, **first})
        return replace(spec, more_nics=tuple(_nic_of(nic) for nic in more))
    ipv4, ipv6 = entry.get("ipv4") or {}, entry.get("ipv6") or {}
    return Spec(
        name=entry["name"],
        id=str(entry.get("id") or entry["name"]),
        veth=entry.get("veth"),
        bridge=entry.get("bridge"),
        hwaddr=entry.get("hwaddr"),
        addresses=tuple((a["ip"], a["prefix"]) for a in ipv4.get("address") or []),
        gateway=ipv4.get("gateway"),
        vlan=entry.get("vlan"),
        trunks=tuple(sorted(set(entry.get("trunks") or []))),
        mtu=entry.get("mtu"),
        autostart=bool(entry.get("autostart")),
        protected=bool(entry.get("protected")),
        template=entry.get("template") or DEFAULT_TEMPLATE,
        memory=entry.get("memory"),
        cpus=entry.get("cpus"),
        addresses6=tuple((a["ip"], a["prefix"]) for a in ipv6.get("address") or []),
        gateway6=ipv6.get("gateway"),
    )


def _nic_of(nic: dict[str, Any]) -> Nic:
    ipv4, ipv6 = nic.get("ipv4") or {}, nic.get("ipv6") or {}
    return Nic(
        veth=nic.get("veth"),
        bridge=nic.get("bridge"),
        hwaddr=nic.get("hwaddr"),
        addresses=tuple((a["ip"], a["prefix"]) for a in ipv4.get("address") or []),
        gateway=ipv4.get("gateway"),
        vlan=nic.get("vlan"),
        trunks=tuple(sorted(set(nic.get("trunks") or []))),
        mtu=nic.get("mtu"),
        addresses6=tuple((a["ip"], a["prefix"]) for a in ipv6.get("address") or []),
        gateway6=ipv6.get("gateway"),
    )
