"""The state file: models, loading (JSON/YAML, both shapes), validation and schema.

Names are imported on first use (PEP 562 `__getattr__`): `op_dbus.model.modes`, which the CLI,
doctor and plugins import for `Mode`, then does not pull in pydantic and yaml with it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from op_dbus.model.checks import host_warnings
    from op_dbus.model.errors import FieldError, FieldWarning, StateInputError
    from op_dbus.model.load import LoadedState, load_state, parse_state
    from op_dbus.model.modes import Mode
    from op_dbus.model.schema import state_json_schema
    from op_dbus.model.state import StateFile

_MODULE_OF = {
    "FieldError": "errors",
    "FieldWarning": "errors",
    "LoadedState": "load",
    "Mode": "modes",
    "StateFile": "state",
    "StateInputError": "errors",
    "host_warnings": "checks",
    "load_state": "load",
    "parse_state": "load",
    "state_json_schema": "schema",
}

__all__ = [
    "FieldError",
    "FieldWarning",
    "LoadedState",
    "Mode",
    "StateFile",
    "StateInputError",
    "host_warnings",
    "load_state",
    "parse_state",
    "state_json_schema",
]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
