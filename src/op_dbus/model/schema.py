"""JSON Schema of the state file (the `plugins` shape), for editors and other tools."""

from __future__ import annotations

from typing import Any

from op_dbus.model.state import StateFile

SCHEMA_ID = "https://op-dbus.invalid/schema/state-v1.json"


def state_json_schema() -> dict[str, Any]:
    """The schema pydantic derives from the models, with the draft and an id on top."""
    schema = StateFile.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "op-dbus state file",
        **{k: v for k, v in schema.items() if k != "title"},
    }
