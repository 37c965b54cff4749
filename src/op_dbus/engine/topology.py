"""The host as a picture: uplink -> bridges -> ports -> containers, from a `query` reply.

Pure: it reads the state file's shape with its read-only facts (net interfaces with ofport
and ownership, lxc containers with running and ownership) and names what is connected to
what, so front ends (`op-dbus show`, the MCP tool and live page) need not join the sections
themselves. Given a plan of a state file, each resource carries its drift: the kind of
action the plan has for it (`create`, `modify`, `delete`), or None.
"""

from __future__ import annotations

from typing import Any


def _addresses(entry: dict[str, Any]) -> list[str]:
    """IPv4 addresses first, then IPv6 ones, as ADDRESS/PREFIX."""
    return [
        f"{a['ip']}/{a['prefix']}"
        for family in ("ipv4", "ipv6")
        for a in (entry.get(family) or {}).get("address") or []
    ]


def drift_marks(plan: dict[str, Any] | None) -> dict[str, str]:
    """Each planned resource (`bridge/NAME`, `port/NAME`, `container/NAME`) and the kind of
    its action; an address change (`ipv4/NAME`, `ipv6/NAME`) marks its interface as
    modified."""
    marks: dict[str, str] = {}
    for entry in (plan or {}).get("plugins") or []:
        for action in entry.get("actions") or []:
            kind, _, name = action["resource"].partition("/")
            if kind in ("ipv4", "ipv6"):
                marks.setdefault(f"interface/{name}", "modify")
            else:
                marks[action["resource"]] = action["kind"]
    return marks


def topology(state: dict[str, Any], plan: dict[str, Any] | None = None) -> dict[str, Any]:
    """`{"uplinks": [...], "bridges": [{name, addresses, gateway, gateway6, owned, uplinks, drift,
    ports: [{name, type, vlan, ofport, error, owned, container, drift}]}], "containers":
    [...], "detached": [...], "missing": [...]}` from a query's `state`; `missing` lists
    what the plan creates (not on the host yet)."""
    plugins = state.get("plugins", {})
    interfaces = (plugins.get("net") or {}).get("interfaces") or []
    containers = (plugins.get("lxc") or {}).get("containers") or []
    marks = drift_marks(plan)

    def drift(kind: str, name: str) -> str | None:
        return marks.get(f"{kind}/{name}") or marks.get(f"interface/{name}")

    by_veth = {c.get("veth"): c for c in containers if c.get("veth")}
    bridges: dict[str, dict[str, Any]] = {}
    for entry in interfaces:
        if entry.get("type") == "ovs-bridge":
            bridges[entry["name"]] = {
                "name": entry["name"],
                "addresses": _addresses(entry),
                "gateway": (entry.get("ipv4") or {}).get("gateway"),
                "gateway6": (entry.get("ipv6") or {}).get("gateway"),
                "owned": entry.get("owned"),
                "drift": drift("bridge", entry["name"]),
                "uplinks": [],
                "ports": [],
            }
    for entry in interfaces:
        bridge = bridges.get(entry.get("bridge") or "")
        if entry.get("type") == "ovs-bridge" or bridge is None:
            continue
        container = by_veth.get(entry["name"])
        if container is None and entry.get("type") == "ovs-port":
            bridge["uplinks"].append(entry["name"])  # a device of the host's: its way out
        bridge["ports"].append(
            {
                "name": entry["name"],
                "type": entry.get("type"),
                "vlan": entry.get("vlan"),
                "ofport": entry.get("ofport"),
                "addresses": _addresses(entry),
                "error": entry.get("error"),
                "owned": entry.get("owned"),
                "container": None if container is None else container.get("name"),
                "drift": drift("port", entry["name"]),
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
                    "ofport": None,
                    "addresses": [],
                    "error": None,
                    "owned": None,
                    "container": container.get("name"),
                    "drift": None,
                }
            )
    attached = {p["container"] for b in bridges.values() for p in b["ports"] if p["container"]}
    present = {f"bridge/{n}" for n in bridges} | {
        f"port/{p['name']}" for b in bridges.values() for p in b["ports"]
    }
    present |= {f"container/{c.get('name')}" for c in containers}
    return {
        "uplinks": sorted({u for b in bridges.values() for u in b["uplinks"]}),
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
                "drift": drift("container", c.get("name") or ""),
            }
            for c in containers
        ],
        "detached": sorted(c["name"] for c in containers if c.get("name") not in attached),
        "missing": sorted(r for r, kind in marks.items() if kind == "create" and r not in present),
    }
