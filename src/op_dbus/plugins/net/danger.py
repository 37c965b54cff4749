"""Which net actions cut connectivity: pure rules over the host's lifelines.

A lifeline is what keeps the host reachable now: the devices its default routes leave by
(with their gateways), the addresses on each device, and the local addresses of live TCP
sessions (an SSH login among them). An action is dangerous when it removes or changes a
bridge, port or address that carries one, or removes a bridge with running containers'
ports (docs/decisions.md, "Dangerous actions").
"""

from __future__ import annotations

import dataclasses
import ipaddress
from dataclasses import dataclass, field
from typing import Any

from op_dbus.native.vswitch import PORT_OWNER_KEY
from op_dbus.plugins.base import Action, ActionKind, Section
from op_dbus.plugins.net.diff import split

HARMLESS = frozenset({"name", "bridge", "external_ids", "external_ids_remove", "owned"})
"""Fields of a bridge or port whose change carries no traffic."""


@dataclass(frozen=True)
class Lifelines:
    routes: dict[str, str] = field(default_factory=dict)
    """Device of each default route -> its gateway ("" for a device route)."""
    addresses: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    sessions: frozenset[str] = frozenset()
    """Local addresses (IPv4 and IPv6) of established TCP sessions."""
    own_routes: frozenset[str] = frozenset()
    """Devices whose default route op-dbus made: the only ones a gateway change removes."""
    ipv6: Lifelines | None = None
    """The same of IPv6 (routes, addresses, own routes; `sessions` hold both families)."""


def _device_reasons(device: str, lines: Lifelines) -> list[str]:
    """What goes through `device` (a bridge's own interface, an internal port)."""
    reasons = []
    if device in lines.routes:
        via = lines.routes[device]
        reasons.append(f"{device} carries the default route{f' via {via}' if via else ''}")
    live = sorted(ip for ip, _ in lines.addresses.get(device, []) if ip in lines.sessions)
    if live:
        reasons.append(f"{device} holds {', '.join(live)}, the local end of live TCP sessions")
    return reasons + (_device_reasons(device, lines.ipv6) if lines.ipv6 else [])


def _container_ports(ports: dict[str, dict], bridge: str) -> list[str]:
    """Containers whose port on `bridge` is up (vswitchd gave it an ofport: the veth exists,
    so the container runs)."""
    return sorted(
        (p.get("external_ids") or {}).get(PORT_OWNER_KEY, name)
        for name, p in ports.items()
        if p["bridge"] == bridge
        and PORT_OWNER_KEY in (p.get("external_ids") or {})
        and isinstance(p.get("ofport"), int)
        and p["ofport"] >= 0
        and not p.get("error")
    )


def _bridge_reasons(name: str, ports: dict[str, dict], lines: Lifelines) -> list[str]:
    reasons = _device_reasons(name, lines)
    for port, entry in sorted(ports.items()):
        if entry["bridge"] == name and entry.get("type") == "ovs-internal":
            reasons += _device_reasons(port, lines)
    return reasons


def _port_reasons(name: str, ports: dict[str, dict], lines: Lifelines) -> list[str]:
    entry = ports.get(name)
    if entry is None:
        return []
    if entry.get("type") == "ovs-internal":
        return _device_reasons(name, lines)
    if PORT_OWNER_KEY in (entry.get("external_ids") or {}):
        return []
    carried = _bridge_reasons(entry["bridge"], ports, lines)  # an uplink: all of its bridge's
    return [f"{name} is an uplink of {entry['bridge']}, where {why}" for why in carried]


def _address_reasons(
    name: str, after: dict[str, Any], lines: Lifelines, off: str = "takes {name} down"
) -> list[str]:
    """What an `ipv4/` (or, given the IPv6 lifelines, `ipv6/`) action cuts; `off` says what
    `enabled: false` does."""
    reasons: list[str] = []
    have = lines.addresses.get(name, [])
    if "address" in after:
        kept = {(a["ip"], a["prefix"]) for a in after["address"]}
        gateway = lines.routes.get(name, "")
        for ip, prefix in sorted(set(have) - kept):
            if ip in lines.sessions:
                reasons.append(f"removes {ip}/{prefix}, the local end of live TCP sessions")
            network = ipaddress.ip_interface(f"{ip}/{prefix}").network
            if gateway and ipaddress.ip_address(gateway) in network:
                reasons.append(f"removes {ip}/{prefix}, the way to the default gateway {gateway}")
    if after.get("enabled") is False:
        off = off.format(name=name)
        reasons += [f"{off}: {why}" for why in _device_reasons(name, lines)]
    if "gateway" in after:
        gone = {
            dev: via
            for dev, via in lines.routes.items()
            if dev in lines.own_routes and (dev == name or after["gateway"])
        }
        verb = "replaces" if after["gateway"] else "removes"
        for device, via in sorted(gone.items()):
            if (device, via) != (name, after["gateway"]):
                reasons.append(f"{verb} the default route via {via or '-'} dev {device}")
    return reasons


def mark(current: Section, actions: list[Action], lines: Lifelines) -> list[Action]:
    """`actions` with the dangerous ones marked, each with its reasons."""
    _, ports = split(current)
    marked = []
    for action in actions:
        kind, _, name = action.resource.partition("/")
        reasons: list[str] = []
        if kind == "bridge" and action.kind == ActionKind.DELETE:
            reasons = _bridge_reasons(name, ports, lines)
            if running := _container_ports(ports, name):
                reasons.append(f"ports of running containers: {', '.join(running)}")
        elif kind in ("bridge", "port", "openflow") and action.kind == ActionKind.MODIFY:
            changed = sorted(set(action.after) - HARMLESS)
            if changed:
                carried = (
                    _port_reasons(name, ports, lines)
                    if kind == "port"
                    else _bridge_reasons(name, ports, lines)  # its own flows too
                )
                reasons = [f"changes {', '.join(changed)}: {why}" for why in carried]
        elif kind == "port" and action.kind == ActionKind.DELETE:
            reasons = _port_reasons(name, ports, lines)
        elif kind == "ipv4":
            reasons = _address_reasons(name, action.after, lines)
        elif kind == "ipv6" and lines.ipv6 is not None:
            reasons = _address_reasons(name, action.after, lines.ipv6, "turns IPv6 off on {name}")
        marked.append(dataclasses.replace(action, dangerous=tuple(reasons)) if reasons else action)
    return marked
