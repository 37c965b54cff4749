"""Turning what the plugins read into a state file a user can keep (`init --introspect`).

A `query()` result is in the state file's shape plus read-only facts (ofport, pid, ownership,
unit states) that a checkpoint needs and a state file must not carry. This keeps exactly the
fields the models declare, drops op-dbus's own ownership marks, and leaves the wiring of
container veths to the lxc section, where the file's rules put it.
"""

from __future__ import annotations

import types
from typing import Any, Union, get_args, get_origin

from pydantic import BaseModel

from op_dbus.model.fields import RESERVED_EXTERNAL_ID_PREFIX
from op_dbus.model.state import BRIDGE_TYPE, Plugins


def state_file_from(sections: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A `plugins`-shaped state file from query results keyed by section name."""
    plugins = prune(sections, Plugins)
    if "net" in plugins:
        _drop_reserved_ids(plugins["net"])
        if "lxc" in plugins:
            _leave_container_veths_to_lxc(plugins["net"], plugins["lxc"])
    return {"version": 1, "plugins": plugins}


def prune(value: Any, annotation: Any) -> Any:
    """`value` without the keys `annotation` (a model, or a list/dict/optional of one) lacks."""
    model = _model_in(annotation)
    if model is not None and isinstance(value, dict):
        return {
            key: prune(item, model.model_fields[key].annotation)
            for key, item in value.items()
            if key in model.model_fields
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
    for interface in net.get("interfaces", []):
        ids = interface.get("external_ids")
        if ids is None:
            continue
        kept = {k: v for k, v in ids.items() if not k.startswith(RESERVED_EXTERNAL_ID_PREFIX)}
        if kept:
            interface["external_ids"] = kept
        else:
            del interface["external_ids"]


def _leave_container_veths_to_lxc(net: dict[str, Any], lxc: dict[str, Any]) -> None:
    veths = {c["veth"] for c in lxc.get("containers", []) if c.get("veth")}
    interfaces = net.get("interfaces", [])
    net["interfaces"] = [
        i for i in interfaces if i.get("type") == BRIDGE_TYPE or i["name"] not in veths
    ]
    for interface in net["interfaces"]:
        if "ports" in interface:
            interface["ports"] = [p for p in interface["ports"] if p not in veths]
