"""Narrowing a `query` reply to the resources an agent names, and drawing into the picture
what a plan would create (the picture of what is wired to what is `engine.topology`, shared
with `op-dbus show`)."""

from __future__ import annotations

import fnmatch
from typing import Any


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


def with_missing(picture: dict[str, Any], plan: dict[str, Any] | None) -> dict[str, Any]:
    """`picture` (engine.topology's, drawn with `plan`) with each resource the plan would
    create drawn where it belongs, marked `create`: a missing bridge as a bridge, a missing
    port under its bridge, a missing container among the containers."""
    created = {
        action["resource"]: action.get("after") or {}
        for entry in (plan or {}).get("plugins") or []
        for action in entry.get("actions") or []
        if action["kind"] == "create"
    }
    missing = [(r, created.get(r, {})) for r in picture.get("missing") or []]
    if not missing:
        return picture
    bridges = {b["name"]: {**b, "ports": list(b["ports"])} for b in picture["bridges"]}
    containers = list(picture["containers"])
    for resource, after in missing:
        kind, _, name = resource.partition("/")
        if kind == "bridge":
            bridges[name] = {
                "name": name,
                "addresses": [],
                "gateway": None,
                "owned": None,
                "drift": "create",
                "uplinks": [],
                "ports": [],
            }
        elif kind == "container":
            containers.append(
                {
                    "id": after.get("id"),
                    "name": name,
                    "running": False,
                    "bridge": after.get("bridge"),
                    "veth": after.get("veth"),
                    "addresses": [],
                    "owned": None,
                    "drift": "create",
                }
            )
    for resource, after in missing:
        kind, _, name = resource.partition("/")
        bridge = bridges.get(after.get("bridge") or "")
        if kind == "port" and bridge is not None:
            bridge["ports"].append(
                {
                    "name": name,
                    "type": after.get("type"),
                    "vlan": after.get("vlan"),
                    "ofport": None,
                    "addresses": [],
                    "error": None,
                    "owned": None,
                    "container": None,
                    "drift": "create",
                }
            )
    return {**picture, "bridges": list(bridges.values()), "containers": containers}
