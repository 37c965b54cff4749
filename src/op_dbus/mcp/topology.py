"""The host as a picture: bridges -> ports -> containers, built from a `query` reply.

Pure: it reads the state file's shape (net interfaces, lxc containers) and names what is
connected to what, so an agent (and the live page) need not join the sections themselves.
"""

from __future__ import annotations

import fnmatch
from typing import Any


def _addresses(entry: dict[str, Any]) -> list[str]:
    ipv4 = entry.get("ipv4") or {}
    return [f"{a['ip']}/{a['prefix']}" for a in ipv4.get("address") or []]


def topology(state: dict[str, Any]) -> dict[str, Any]:
    """`{"bridges": [{name, addresses, ports: [{name, type, vlan, container}]}],
    "containers": [...], "detached": [...]}` from a query's `state`."""
    plugins = state.get("plugins", {})
    interfaces = (plugins.get("net") or {}).get("interfaces") or []
    containers = (plugins.get("lxc") or {}).get("containers") or []
    by_veth = {c.get("veth"): c for c in containers if c.get("veth")}
    bridges: dict[str, dict[str, Any]] = {}
    for entry in interfaces:
        if entry.get("type") == "ovs-bridge":
            bridges[entry["name"]] = {
                "name": entry["name"],
                "addresses": _addresses(entry),
                "owned": entry.get("owned"),
                "ports": [],
            }
    for entry in interfaces:
        bridge = bridges.get(entry.get("bridge") or "")
        if entry.get("type") == "ovs-bridge" or bridge is None:
            continue
        container = by_veth.get(entry["name"])
        bridge["ports"].append(
            {
                "name": entry["name"],
                "type": entry.get("type"),
                "vlan": entry.get("vlan"),
                "addresses": _addresses(entry),
                "error": entry.get("error"),
                "container": None if container is None else container.get("name"),
            }
        )
    for container in containers:  # a container's veth is its section's, not net's port
        bridge = bridges.get(container.get("bridge") or "")
        veth = container.get("veth")
        if bridge is not None and veth and veth not in {p["name"] for p in bridge["ports"]}:
            bridge["ports"].append(
                {
                    "name": veth,
                    "type": "container",
                    "vlan": None,
                    "addresses": [],
                    "error": None,
                    "container": container.get("name"),
                }
            )
    attached = {p["container"] for b in bridges.values() for p in b["ports"] if p["container"]}
    return {
        "bridges": list(bridges.values()),
        "containers": [
            {
                "id": c.get("id"),
                "name": c.get("name"),
                "running": c.get("running"),
                "bridge": c.get("bridge"),
                "veth": c.get("veth"),
                "addresses": _addresses(c),
                "owned": c.get("owned"),
            }
            for c in containers
        ],
        "detached": sorted(c["name"] for c in containers if c.get("name") not in attached),
    }


def filter_state(plugins: dict[str, Any], patterns: list[str]) -> dict[str, Any]:
    """Only the resources whose name (interface, container, unit) matches a shell pattern."""
    if not patterns:
        return plugins

    def wanted(resource: str) -> bool:
        return any(fnmatch.fnmatchcase(resource, p) for p in patterns)

    narrowed: dict[str, Any] = {}
    for name, section in plugins.items():
        if name == "net":
            narrowed[name] = {
                **section,
                "interfaces": [e for e in section.get("interfaces") or [] if wanted(e["name"])],
            }
        elif name == "lxc":
            narrowed[name] = {
                **section,
                "containers": [
                    c
                    for c in section.get("containers") or []
                    if wanted(c.get("name", "")) or wanted(str(c.get("id", "")))
                ],
            }
        elif name == "systemd":
            units = section.get("units") or {}
            narrowed[name] = {**section, "units": {u: v for u, v in units.items() if wanted(u)}}
        else:
            narrowed[name] = section
    return narrowed
