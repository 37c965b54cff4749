"""The lxc plugin's diff: pure logic from (current, desired) sections to actions.

Resources are `container/NAME` (NAME: the LXC container name, which is the entry's `name`,
or its `id` when it has none) and `port/NAME` (a stale OVS port a dead container left).
Desired is partial: a field left out is left alone, and a container the file does not list
is never touched. Only `state: "absent"` destroys a container, and only one op-dbus created.
A creation of op-dbus's cut short (`incomplete`) is planned as a create, which finishes it.
A file asking to change a container op-dbus did not create, or one whose config cannot be
read, is refused (Refused) for that container; containers it does not name never matter.
With `exhaustive` (rollback), desired is a checkpoint: owned containers it lacks (or has only
half-made) are destroyed, and a foreign one that appeared meanwhile is planned for deletion
too, which apply refuses: the rollback then reports it left instead of claiming the host is
as before.
"""

from __future__ import annotations

from typing import Any

from op_dbus.errors import Refused
from op_dbus.native.lxc_config import DEFAULT_TEMPLATE, default_hwaddr, memory_mib, nic_hwaddr
from op_dbus.plugins.base import Action, ActionKind, Section

PLUGIN = "lxc"
RESTART_FIELDS = (
    *("veth", "hwaddr", "ipv4", "ipv6", "memory", "cpus"),
    *("vlan", "trunks", "mtu", "nics"),
)
"""Fields that only take effect when the container starts: a running one is restarted."""
LIMITS = ("memory", "cpus")
PORT_FIELDS = ("vlan", "trunks", "mtu")
"""The container port's VLAN tag, trunks (a set) and the NIC's MTU; null clears one."""


def container_name(entry: dict[str, Any]) -> str:
    """The LXC container name an entry stands for: its `name`, else its `id`."""
    return str(entry.get("name") or entry["id"])


def _ip_key(section: dict[str, Any] | None) -> tuple[Any, ...]:
    """An `ipv4` or `ipv6` in one spelling: its addresses sorted, and its gateway."""
    section = section or {}
    addresses = sorted((a["ip"], a["prefix"]) for a in section.get("address") or [])
    return (addresses, section.get("gateway"))


def _ip_change(have: dict[str, Any] | None, want: dict[str, Any] | None) -> dict | None:
    """The ipv4 (or ipv6) the container should get, or None when `want`'s fields already
    hold."""
    have = have or {}
    merged = {
        "address": (want or {}).get("address", have.get("address") or []),
        "gateway": (want or {}).get("gateway", have.get("gateway")),
    }
    return merged if _ip_key(merged) != _ip_key(have) else None


def _limits(want: dict[str, Any]) -> dict[str, int | None]:
    """memory (as MiB) and cpus, for those `want` has."""
    limits = {key: want[key] for key in LIMITS if key in want}
    if limits.get("memory") is not None:
        limits["memory"] = memory_mib(limits["memory"])
    return limits


def _changes(have: dict[str, Any], want: dict[str, Any], exhaustive: bool) -> dict[str, Any]:
    changed: dict[str, Any] = {}
    for key, value in _limits(want).items():
        if (value is not None or exhaustive) and value != have.get(key):
            changed[key] = value
    for key in PORT_FIELDS:
        port: Any = want.get(key)
        port = sorted(set(port or [])) if key == "trunks" else port
        if key in want and (port is not None or exhaustive) and port != have.get(key):
            changed[key] = port
    for key in ("veth", "hwaddr", "protected", "autostart", "running"):
        if want.get(key) is not None and want[key] != have.get(key):
            changed[key] = want[key]
    if "bridge" in want and want["bridge"] != have.get("bridge"):
        changed["bridge"] = want["bridge"]
    if "configured_bridge" in want and (  # a checkpoint: its config's bridge goes back too
        "bridge" in changed or want["configured_bridge"] != have.get("configured_bridge")
    ):
        changed["configured_bridge"] = want["configured_bridge"]
    if have.get("owned") and want.get("id") and want["id"] != have.get("id"):
        changed["id"] = want["id"]
    for family in ("ipv4", "ipv6"):
        if family in want and (ip := _ip_change(have.get(family), want[family])) is not None:
            changed[family] = ip
    if (nics := _nics_change(have, want, exhaustive)) is not None:
        changed["nics"] = nics
    return changed


def nics_of(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """The entry's NICs: its `nics`, or the single-NIC fields as one."""
    if entry.get("nics"):
        return [dict(nic) for nic in entry["nics"]]
    return [
        {
            k: entry[k]
            for k in ("veth", "bridge", "hwaddr", "vlan", "trunks", "mtu", "ipv4", "ipv6")
            if k in entry
        }
    ]


def _nic_key(nic: dict[str, Any]) -> dict[str, Any]:
    """A NIC's declared fields in one spelling (trunks a sorted set, addresses sorted)."""
    key = {k: v for k, v in nic.items() if v is not None and k not in ("ipv4", "ipv6")}
    key["trunks"] = sorted(set(nic.get("trunks") or []))
    for family in ("ipv4", "ipv6"):
        if nic.get(family) is not None:
            key[family] = _ip_key(nic[family])
    return key


def _nics_change(have: dict[str, Any], want: dict[str, Any], exhaustive: bool) -> Any:
    """The NICs the container should get (a field a desired NIC leaves out keeps the current
    NIC's at that place), or None when they already are so. A checkpoint without `nics`
    (one NIC) takes the extra ones away."""
    current = nics_of(have)
    if "nics" not in want:
        return [] if exhaustive and len(current) > 1 else None
    merged = [
        {**(current[i] if i < len(current) else {}), **nic} for i, nic in enumerate(want["nics"])
    ]
    same = len(merged) == len(current) and all(
        _nic_key(m) == _nic_key(c) for m, c in zip(merged, current, strict=True)
    )
    return None if same else merged


def creation(want: dict[str, Any]) -> dict[str, Any]:
    """A create action's `after`: every field, defaults filled in. Not started unless asked
    (like `lxc-create` and `pct create`)."""
    if want.get("nics"):
        nics = [
            {**nic, "hwaddr": nic.get("hwaddr") or nic_hwaddr(want["id"], i)}
            for i, nic in enumerate(want["nics"])
        ]
        return {**creation({k: v for k, v in want.items() if k != "nics"} | nics[0]), "nics": nics}
    ipv4, ipv6 = want.get("ipv4") or {}, want.get("ipv6") or {}
    return {
        "name": container_name(want),
        "id": want["id"],
        "veth": want.get("veth"),
        "bridge": want.get("bridge"),
        "running": bool(want.get("running")),
        "template": want.get("template") or DEFAULT_TEMPLATE,
        "ipv4": {"address": list(ipv4.get("address") or []), "gateway": ipv4.get("gateway")},
        "ipv6": {"address": list(ipv6.get("address") or []), "gateway": ipv6.get("gateway")},
        "hwaddr": want.get("hwaddr") or default_hwaddr(want["id"]),
        "protected": bool(want.get("protected")),
        "vlan": want.get("vlan"),
        "trunks": sorted(set(want.get("trunks") or [])),
        "mtu": want.get("mtu"),
        "autostart": bool(want.get("autostart")),
        "memory": None,
        "cpus": None,
        **_limits(want),
    }


def diff_lxc(current: Section, desired: Section, *, exhaustive: bool = False) -> list[Action]:
    """Destroys, stale port removals, creates, then modifies (config, bridge, running)."""
    have = {c["name"]: c for c in current.get("containers") or []}
    deletes: list[Action] = []
    creates: list[Action] = []
    modifies: list[Action] = []
    listed: set[str] = set()
    for want in desired.get("containers") or []:
        name = container_name(want)
        resource = f"container/{name}"
        listed.add(name)
        cur = have.get(name)
        if cur is not None and cur.get("unreadable"):
            if exhaustive:
                continue
            raise Refused(
                resource, f"its config cannot be read ({cur['unreadable']}); it is left alone"
            )
        if want.get("state") == "absent" or (exhaustive and want.get("incomplete")):
            if cur is None or (cur.get("incomplete") and want.get("incomplete")):
                continue
            if not cur.get("owned"):
                raise Refused(
                    resource,
                    'state is "absent", but op-dbus did not create it (no owner mark in its'
                    " config); it never destroys such a container",
                )
            deletes.append(Action(PLUGIN, ActionKind.DELETE, resource, before=cur))
            continue
        if cur is None or cur.get("incomplete"):
            if want.get("owned") is not False:  # someone else's cannot be recreated
                creates.append(Action(PLUGIN, ActionKind.CREATE, resource, cur, creation(want)))
            continue
        changed = _changes(cur, want, exhaustive)
        if not cur.get("owned") and (config := sorted(set(changed) - {"running"})):
            if not exhaustive:
                raise Refused(
                    resource,
                    "op-dbus did not create this container (no owner mark in its config):"
                    f" it only starts and stops it, and will not change {', '.join(config)}",
                )
            changed = {k: v for k, v in changed.items() if k == "running"}
        if changed:
            before = {"name": name, **{key: cur.get(key) for key in changed}}
            after = {"name": name, **changed}
            modifies.append(Action(PLUGIN, ActionKind.MODIFY, f"container/{name}", before, after))
    if exhaustive:
        for name, cur in sorted(have.items()):
            if name not in listed and not cur.get("unreadable"):
                deletes.append(Action(PLUGIN, ActionKind.DELETE, f"container/{name}", before=cur))
    stale = [
        Action(PLUGIN, ActionKind.DELETE, f"port/{port['name']}", before=port)
        for port in current.get("stale_ports") or []
    ]
    return [*deletes, *stale, *creates, *modifies]
