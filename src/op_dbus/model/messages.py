"""Turn pydantic's validation errors into one plain sentence per field, at the user's path."""

from __future__ import annotations

import difflib
import types
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from op_dbus.model.errors import FieldError
from op_dbus.model.paths import Loc, describe, format_path
from op_dbus.model.state import SECTION_ORDER, StateFile

_KEY_MARK = "[key]"  # pydantic's last loc element when a mapping key (not its value) is wrong

_TYPE_WORDS = {
    "bool_type": "true or false",
    "string_type": "a string",
    "int_type": "an integer",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
}


def field_errors(exc: ValidationError, root: type[BaseModel]) -> list[FieldError]:
    """One FieldError per pydantic error; `root` is the model that validated the document."""
    out = []
    for err in exc.errors(include_url=False):
        loc: Loc = tuple(err["loc"])
        if loc and loc[-1] == _KEY_MARK:
            loc = loc[:-1]
        out.append(FieldError(format_path(loc), _message(err, loc, root)))
    return out


def _message(err: Any, loc: Loc, root: type[BaseModel]) -> str:
    kind, value = err["type"], err.get("input")
    ctx = err.get("ctx") or {}
    if kind == "value_error" and "error" in ctx:
        return str(ctx["error"])
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return _unknown_field(loc, root)
    if kind == "literal_error":
        expected = str(ctx.get("expected", "")).replace("'", '"')
        choice = f"one of {expected}" if "," in expected else expected
        return f"must be {choice}, got {describe(value)}"
    if kind in ("too_short", "too_long"):
        bound = ctx.get("min_length") if kind == "too_short" else ctx.get("max_length")
        least = "at least" if kind == "too_short" else "at most"
        return f"must list {least} {bound} items, got {ctx.get('actual_length')}"
    if kind == "recursion_loop":
        return "refers to itself"
    if kind in _TYPE_WORDS:
        return f"must be {_TYPE_WORDS[kind]}, got {describe(value)}"
    text = str(err.get("msg", "is invalid"))
    return text.replace("Input should be", "must be", 1)


def _unknown_field(loc: Loc, root: type[BaseModel]) -> str:
    name = str(loc[-1]) if loc else ""
    if root is StateFile and len(loc) == 1 and name in SECTION_ORDER:
        return 'unknown field: with "version"/"plugins" at the top, sections go under "plugins"'
    model = _model_at(root, loc[:-1])
    if model is None:
        return "unknown field"
    allowed = list(model.model_fields)
    close = difflib.get_close_matches(name, allowed, n=1)
    hint = f'did you mean "{close[0]}"? ' if close else ""
    return f"unknown field ({hint}allowed: {', '.join(allowed)})"


def _unwrap(tp: Any) -> Any:
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            tp = next(a for a in get_args(tp) if a is not type(None))
        else:
            return tp


def _model_at(root: type[BaseModel], loc: Loc) -> type[BaseModel] | None:
    """The model class that sits at `loc`, walking field annotations, list items and map values."""
    current: Any = root
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return None
            current = field.annotation
        elif get_origin(current) in (list, dict):
            current = get_args(current)[-1]
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None
