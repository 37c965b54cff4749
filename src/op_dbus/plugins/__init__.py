"""Plugins by section name, built from the registry (op_dbus/registry.py).

The engine and the daemon look plugins and watchers up here so they never import a concrete
plugin themselves; each is imported only when asked for, so `op-dbus --help` stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from op_dbus.endpoints import Endpoints
from op_dbus.plugins.base import Plugin, WatcherFactory
from op_dbus.registry import REGISTRY


def _load(target: str) -> Any:
    module_name, attribute = target.split(":")
    return getattr(import_module(module_name), attribute)


def make_plugin(name: str, endpoints: Endpoints) -> Plugin:
    """The plugin of section `name`."""
    spec = REGISTRY.by_name.get(name)
    if spec is None:
        raise ValueError(f"unknown plugin {name!r}; known: {', '.join(REGISTRY.order)}")
    cls: type[Plugin] = _load(spec.plugin)
    return cls(endpoints=endpoints)


def watcher_factory(name: str) -> WatcherFactory:
    """The function that makes the daemon's event sources for section `name`."""
    factory: WatcherFactory = _load(REGISTRY.by_name[name].watcher)
    return factory
