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


ROUTE_KEYS = frozenset({"to", "via", "metric", "table"})


def route_text(route: dict[str, Any]) -> str:
    """A static route as `ip route` would spell it (main table and metric 0 left out)."""
    via = f" via {route['via']}" if route.get("via") else ""
    table = f" table {route['table']}" if route.get("table", 254) != 254 else ""
    metric = f" metric {route['metric']}" if route.get("metric") else ""
    return f"{route['to']}{via}{table}{metric}"


def _routes(entry: dict[str, Any]) -> list[str]:
    """op-dbus's static routes on an interface."""
    return [route_text(route) for route in entry.get("routes") or []]


def _veths(container: dict[str, Any]) -> list[str]:
    """The host ends of a container's NICs: its single `veth`, or each of its `nics`."""
    names = [container.get("veth"), *(n.get("veth") for n in container.get("nics") or [])]
    return list(dict.fromkeys(n for n in names if n))


def _nic_bridges(container: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(veth, bridge) of each NIC of a container."""
    nics = container.get("nics") or [container]
    return [(n["veth"], n.get("bridge")) for n in nics if n.get("veth")]


def _port_kind(entry: dict[str, Any]) -> dict[str, Any]:
    """What a port's type carries, for the picture: VLAN fields, patch peer, tunnel, bond, MTU
    (None where the port has none)."""
    tunnel = entry.get("tunnel") or None
    bond = entry.get("bond") or None
    return {
        "trunks": list(entry.get("trunks") or []),
        "vlan_mode": entry.get("vlan_mode"),
        "peer": entry.get("peer"),
        "tunnel": None
        if tunnel is None
        else {k: tunnel.get(k) for k in ("type", "remote_ip", "key", "dst_port")},
        "bond": None if bond is None else {k: bond.get(k) for k in ("interfaces", "mode", "lacp")},
        "mtu": entry.get("mtu"),
    }


def drift_marks(plan: dict[str, Any] | None) -> dict[str, str]:
    """Each planned resource (`bridge/NAME`, `port/NAME`, `container/NAME`) and the kind of
    its action; an address or route change (`ipv4/NAME`, `ipv6/NAME`, `routes/NAME`) marks its
    interface as modified."""
    marks: dict[str, str] = {}
    for entry in (plan or {}).get("plugins") or []:
        for action in entry.get("actions") or []:
            kind, _, name = action["resource"].partition("/")
            if kind in ("ipv4", "ipv6", "routes"):
                marks.setdefault(f"interface/{name}", "modify")
            else:
                marks[action["resource"]] = action["kind"]
    return marks


def topology(state: dict[str, Any], plan: dict[str, Any] | None = None) -> dict[str, Any]:
    """`{"uplinks": [...], "bridges": [{name, addresses, gateway, gateway6, routes, owned,
    uplinks, drift, mtu, openflow (how many of op-dbus's rules), ports: [{name, type, vlan,
    trunks, vlan_mode, protected, peer, tunnel, bond, mtu, ofport, error, owned, container,
    drift, routes?}]}], "containers":
    [...], "detached": [...], "missing": [...]}` from a query's `state`; `missing` lists
    what the plan creates (not on the host yet)."""
    plugins = state.get("plugins", {})
    interfaces = (plugins.get("net") or {}).get("interfaces") or []
    containers = (plugins.get("lxc") or {}).get("containers") or []
    marks = drift_marks(plan)

    def drift(kind: str, name: str) -> str | None:
        return marks.get(f"{kind}/{name}") or marks.get(f"interface/{name}")

    by_veth = {veth: c for c in containers for veth in _veths(c)}
    bridges: dict[str, dict[str, Any]] = {}
    for entry in interfaces:
        if entry.get("type") == "ovs-bridge":
            bridges[entry["name"]] = {
                "name": entry["name"],
                "addresses": _addresses(entry),
                "gateway": (entry.get("ipv4") or {}).get("gateway"),
                "gateway6": (entry.get("ipv6") or {}).get("gateway"),
                "routes": _routes(entry),
                "owned": entry.get("owned"),
                "drift": drift("bridge", entry["name"]),
                "mtu": entry.get("mtu"),
                "openflow": len(entry.get("openflow") or []),
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
                "protected": None if container is None else bool(container.get("protected")),
                "drift": drift("port", entry["name"]),
                **({"routes": _routes(entry)} if entry.get("routes") else {}),
                **_port_kind(entry),
            }
        )
    for container in containers:  # a container's veths are its section's, not net's ports
        for veth, name in _nic_bridges(container):
            bridge = bridges.get(name or "")
            if bridge is not None and veth not in {p["name"] for p in bridge["ports"]}:
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
                        "protected": bool(container.get("protected")),
                        "drift": None,
                        **_port_kind({}),
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
