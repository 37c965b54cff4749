"""Turning what the plugins read into a state document a user can keep (`query`, `init`).

A `query()` result is in the state file's shape plus read-only facts (ofport, pid, ownership,
unit states) that a checkpoint needs and a state file must not carry. `state_document`
keeps exactly the fields the models declare, drops op-dbus's own ownership marks, leaves
the wiring of container veths to the lxc section (where the file's rules put it), and
leaves out what a file cannot name: a container op-dbus did not create and that has no id.
The result validates, and a plan of it against the same host is empty.
"""

from __future__ import annotations

import copy
import fnmatch
import types
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel

from op_dbus.model.fields import RESERVED_EXTERNAL_ID_PREFIX
from op_dbus.model.state import BRIDGE_TYPE, SECTION_ORDER, Container, Interface, Plugins

DECLARED_BY_KIND: dict[str, type[BaseModel]] = {
    "bridge": Interface,
    "port": Interface,
    "container": Container,
}
"""The model of each kind of plan resource (`bridge/NAME`...), for showing what a file says."""


@dataclass(frozen=True)
class Selection:
    """Which resources a document shows. Each pattern list is shell patterns over names;
    None means "not narrowed", except `units`: systemd units appear only when asked for
    (a host has hundreds; a document that pins them all is no one's intent)."""

    units: Sequence[str] | None = None
    bridges: Sequence[str] | None = None
    containers: Sequence[str] | None = None
    narrowed: bool = False
    """A resource filter was given (not just "which units"): sections without one go."""


@dataclass
class Document:
    """A state document and what could not go into it (for a note beside it)."""

    document: dict[str, Any]
    left_out: list[str] = field(default_factory=list)


def state_document(
    sections: dict[str, dict[str, Any]], selection: Selection = Selection(), *, facts: bool = False
) -> Document:
    """The document of query results keyed by section name, narrowed to `selection`. With
    `facts`, every field the plugins read stays (a reading, not a file to apply)."""
    chosen = select(sections, selection)
    if facts:
        return Document({"version": 1, "plugins": chosen})
    left_out: list[str] = []
    plugins = prune(chosen, Plugins)
    if "net" in plugins:
        _drop_reserved_ids(plugins["net"])
        _leave_container_veths_to_lxc(plugins["net"], sections.get("lxc") or {})
    if "lxc" in plugins:
        left_out += _drop_unnamed_containers(plugins["lxc"])
    return Document({"version": 1, "plugins": plugins}, left_out)


def select(sections: dict[str, dict[str, Any]], selection: Selection) -> dict[str, Any]:
    """The sections (copied) with only the resources `selection` asks for, in file order."""
    chosen: dict[str, Any] = {}
    for name in SECTION_ORDER:
        section = sections.get(name)
        if section is None:
            continue
        section = copy.deepcopy(section)
        if name == "systemd":
            if selection.units is None:
                continue
            units = section.get("units") or {}
            section["units"] = {u: v for u, v in units.items() if _matches(u, selection.units)}
        elif name == "net":
            if selection.narrowed and selection.bridges is None:
                continue
            if selection.bridges is not None:
                section["interfaces"] = _on_bridges(section, selection.bridges)
        elif name == "lxc":
            if selection.narrowed and selection.containers is None:
                continue
            if selection.containers is not None:
                section["containers"] = [
                    c
                    for c in section.get("containers") or []
                    if _matches(c.get("name") or "", selection.containers)
                    or _matches(str(c.get("id") or ""), selection.containers)
                ]
        elif selection.narrowed:  # a section no filter names
            continue
        chosen[name] = section
    return chosen


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _on_bridges(net: dict[str, Any], patterns: Sequence[str]) -> list[dict[str, Any]]:
    """The bridges matching `patterns` and the ports on them."""
    interfaces = net.get("interfaces") or []
    bridges = {
        i["name"]
        for i in interfaces
        if i.get("type") == BRIDGE_TYPE and _matches(i["name"], patterns)
    }
    return [i for i in interfaces if i["name"] in bridges or i.get("bridge") in bridges]


def prune(value: Any, annotation: Any) -> Any:
    """`value` without the keys `annotation` (a model, or a list/dict/optional of one) lacks."""
    model = _model_in(annotation)
    if model is not None and isinstance(value, dict):
        return {  # in the model's field order: name and type first, as people write them
            key: prune(value[key], spec.annotation)
            for key, spec in model.model_fields.items()
            if value.get(key) is not None and value[key] != spec.default
        }
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is list and isinstance(value, list):
        return [prune(item, args[0]) for item in value]
    if origin is dict and isinstance(value, dict):
        return {key: prune(item, args[1]) for key, item in value.items()}
    if origin in (Union, types.UnionType):
        inner = [arg for arg in args if arg is not type(None)]
        return prune(value, inner[0]) if len(inner) == 1 else value
    return value


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, types.UnionType):
        models = [a for a in get_args(annotation) if _model_in(a) is not None]
        return _model_in(models[0]) if len(models) == 1 else None
    return None


def _drop_reserved_ids(net: dict[str, Any]) -> None:
    net["interfaces"] = [without_marks(i) for i in net.get("interfaces", [])]


def without_marks(interface: dict[str, Any]) -> dict[str, Any]:
    """An interface without op-dbus's own `op-dbus-*` external ids (its ownership marks)."""
    ids = interface.get("external_ids")
    if ids is None:
        return interface
    kept = {k: v for k, v in ids.items() if not k.startswith(RESERVED_EXTERNAL_ID_PREFIX)}
    rest = {k: v for k, v in interface.items() if k != "external_ids"}
    return {**rest, "external_ids": kept} if kept else rest


def _leave_container_veths_to_lxc(net: dict[str, Any], lxc: dict[str, Any]) -> None:
    """A container's port is the lxc section's: its hooks attach it at every start."""
    veths = {c["veth"] for c in lxc.get("containers", []) if c.get("veth")}
    interfaces = net.get("interfaces", [])
    net["interfaces"] = [
        i for i in interfaces if i.get("type") == BRIDGE_TYPE or i["name"] not in veths
    ]
    for interface in net["interfaces"]:
        if "ports" in interface:
            interface["ports"] = [p for p in interface["ports"] if p not in veths]


def _drop_unnamed_containers(lxc: dict[str, Any]) -> list[str]:
    """Containers without an id (made by hand, not op-dbus's) cannot be written in a state
    file; leaving them out leaves them alone. Returns a note for each one."""
    kept, dropped = [], []
    for container in lxc.get("containers", []):
        if container.get("id"):
            kept.append(container)
        else:
            dropped.append(f"container {container.get('name')}: not created by op-dbus, no id")
    lxc["containers"] = kept
    return dropped


def dump(document: dict[str, Any], form: str) -> str:
    """The document as text: "yaml" (block style, keys in the order given) or "json"."""
    if form == "json":
        import json

        return json.dumps(document, indent=2) + "\n"
    import yaml

    return yaml.safe_dump(document, sort_keys=False, default_flow_style=False, width=100)
