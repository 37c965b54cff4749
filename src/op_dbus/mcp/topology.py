"""Narrowing a `query` reply to the resources an agent names (the picture of what is wired
to what is `engine.topology`, shared with `op-dbus show`)."""

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
