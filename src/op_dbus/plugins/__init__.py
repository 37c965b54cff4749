"""The plugin registry: which sections exist, in dependency order, and which are built.

The engine looks plugins up here so it never imports a concrete plugin itself; each
plugin module adds its class to `IMPLEMENTED` when it lands.
"""

from __future__ import annotations

from op_dbus.endpoints import Endpoints
from op_dbus.plugins.base import Plugin

PLUGIN_ORDER: tuple[str, ...] = ("systemd", "net", "lxc")
"""Dependency order: creates and modifies run in this order, deletes in reverse."""

IMPLEMENTED: dict[str, type[Plugin]] = {}


def make_plugin(name: str, endpoints: Endpoints) -> Plugin | None:
    """A plugin for section `name`, or None when that section is not implemented yet."""
    if name not in PLUGIN_ORDER:
        raise ValueError(f"unknown plugin {name!r}; known: {', '.join(PLUGIN_ORDER)}")
    cls = IMPLEMENTED.get(name)
    return None if cls is None else cls(endpoints=endpoints)
