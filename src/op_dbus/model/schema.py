"""JSON Schema of the state file, for editors and other tools (`op-dbus schema`, and the
published copy in schema/op-dbus.schema.json that a test keeps current).

A state file has two shapes (docs/decisions.md, "State file"): `{"version": 1, "plugins":
{...}}`, and the NixOS `stateConfig` shape with the sections at top level. The schema
accepts either: the first when the document has `version` or `plugins`, as the loader does.
"""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from op_dbus.model.state import Plugins, StateFile

SCHEMA_ID = "https://op-dbus.invalid/schema/state-v1.json"
REF = "#/$defs/{model}"


def state_json_schema() -> dict[str, Any]:
    """The schema pydantic derives from both shapes' models, with the draft and an id."""
    _, defs = models_json_schema(
        [(StateFile, "validation"), (Plugins, "validation")], ref_template=REF
    )
    refs = {name: {"$ref": REF.format(model=name)} for name in ("StateFile", "Plugins")}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "op-dbus state file",
        "description": "Either {version: 1, plugins: {...}} or the NixOS stateConfig shape "
        "(the sections net, lxc, systemd at top level).",
        "if": {"anyOf": [{"required": ["version"]}, {"required": ["plugins"]}]},
        "then": refs["StateFile"],
        "else": refs["Plugins"],
        **defs,
    }
