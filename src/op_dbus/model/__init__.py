"""The state file: models, loading (JSON/YAML, both shapes), validation and schema."""

from op_dbus.model.checks import host_warnings
from op_dbus.model.errors import FieldError, FieldWarning, StateInputError
from op_dbus.model.load import LoadedState, load_state, parse_state
from op_dbus.model.modes import Mode
from op_dbus.model.schema import state_json_schema
from op_dbus.model.state import StateFile

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
