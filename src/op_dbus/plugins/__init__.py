"""The plugin registry: which sections exist, in dependency order, and which are built.

The engine looks plugins up here so it never imports a concrete plugin itself. Plugins are
named by import path and imported only when asked for, so `op-dbus --help` stays fast.
"""

from __future__ import annotations

from importlib import import_module

from op_dbus.endpoints import Endpoints
from op_dbus.plugins.base import Plugin

PLUGIN_ORDER: tuple[str, ...] = ("systemd", "net", "lxc")
"""Dependency order: creates and modifies run in this order, deletes in reverse."""

IMPLEMENTED: dict[str, str] = {
    "systemd": "op_dbus.plugins.systemd.plugin:SystemdPlugin",
    "net": "op_dbus.plugins.net.plugin:NetPlugin",
    "lxc": "op_dbus.plugins.lxc.plugin:LxcPlugin",
}
"""Section name -> "module:Class" of its plugin; a section missing here is not built yet."""


def make_plugin(name: str, endpoints: Endpoints) -> Plugin | None:
    """A plugin for section `name`, or None when that section is not implemented yet."""
    if name not in PLUGIN_ORDER:
        raise ValueError(f"unknown plugin {name!r}; known: {', '.join(PLUGIN_ORDER)}")
    target = IMPLEMENTED.get(name)
    if target is None:
        return None
    module_name, class_name = target.split(":")
    cls: type[Plugin] = getattr(import_module(module_name), class_name)
    return cls(endpoints=endpoints)
