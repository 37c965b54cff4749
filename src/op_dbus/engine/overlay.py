"""Laying one partial state over another: the daemon's state file plus its runtime changes.

The state file shape is the same for every section: objects merge key by key, lists of
objects that carry a `name` merge by that name (interfaces, containers), and anything else
(a scalar, a plain list such as a bridge's `ports`) is replaced by the overlay's value.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from op_dbus.plugins.base import Section


def _named(items: Any) -> bool:
    return isinstance(items, list) and all(isinstance(i, dict) and "name" in i for i in items)


def _merge(base: Any, top: Any) -> Any:
    if isinstance(base, dict) and isinstance(top, dict):
        merged = dict(base)
        for key, value in top.items():
            merged[key] = _merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    if base and top and _named(base) and _named(top):
        tops = {item["name"]: item for item in top}
        merged_items = [_merge(i, tops.pop(i["name"])) if i["name"] in tops else i for i in base]
        return merged_items + [copy.deepcopy(item) for item in tops.values()]
    return copy.deepcopy(top)


def overlay(base: Mapping[str, Section], *changes: Mapping[str, Section]) -> dict[str, Section]:
    """`base` with each of `changes` laid over it in order (later ones win)."""
    merged: dict[str, Section] = copy.deepcopy(dict(base))
    for change in changes:
        for name, section in change.items():
            merged[name] = (
                _merge(merged[name], section) if name in merged else copy.deepcopy(section)
            )
    return merged
