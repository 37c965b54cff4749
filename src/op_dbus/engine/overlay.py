"""Laying one partial state over another: the daemon's state file plus its runtime changes.

The state file shape is the same for every section: objects merge key by key, lists of
objects that carry a `name` merge by that name (interfaces, containers). The net section's
other lists (a bridge's `ports`, an interface's `ipv4.address`) say what must be there, not
all there is (docs/decisions.md, "What a file deletes"), so a change adds to them, as its
apply did; anything else (a scalar, a container's addresses) is replaced by the overlay's
value. A change that was applied with prune was authoritative for its sections: each of
them replaces the one below it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from op_dbus.plugins.base import Section

ADDITIVE = frozenset({"net"})
"""Sections whose unnamed lists a partial change adds to."""


def _named(items: Any) -> bool:
    return isinstance(items, list) and all(isinstance(i, dict) and "name" in i for i in items)


def _merge(base: Any, top: Any, additive: bool) -> Any:
    if isinstance(base, dict) and isinstance(top, dict):
        merged = dict(base)
        for key, value in top.items():
            merged[key] = (
                _merge(base[key], value, additive) if key in base else copy.deepcopy(value)
            )
        return merged
    if base and top and _named(base) and _named(top):
        tops = {item["name"]: item for item in top}
        merged_items = [
            _merge(i, tops.pop(i["name"]), additive) if i["name"] in tops else i for i in base
        ]
        return merged_items + [copy.deepcopy(item) for item in tops.values()]
    if additive and isinstance(base, list) and isinstance(top, list):
        return [*base, *(copy.deepcopy(item) for item in top if item not in base)]
    return copy.deepcopy(top)


def overlay(
    base: Mapping[str, Section],
    *changes: Mapping[str, Section],
    replace: bool = False,
    adds: bool = True,
) -> dict[str, Section]:
    """`base` with each of `changes` laid over it in order (later ones win); with `replace`
    (authoritative changes), each section of a change replaces the one below it. `adds`:
    the changes were partial applies, which added to net's lists; without it (layers that
    compose one document, the fleet's groups) a later list replaces the one below."""
    merged: dict[str, Section] = copy.deepcopy(dict(base))
    for change in changes:
        for name, section in change.items():
            below = merged.get(name)
            merged[name] = (
                _merge(below, section, adds and name in ADDITIVE)
                if below is not None and not replace
                else copy.deepcopy(section)
            )
    return merged
