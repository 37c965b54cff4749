"""Bytes to plain JSON-shaped data: JSON first, YAML otherwise, duplicate keys refused.

Everything that can go wrong becomes a FieldError; the result is a fresh tree of dict, list
and scalars with string keys only, no shared or cyclic nodes, bounded in depth and size, so
the layers after this one never meet a surprise from the parser.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from op_dbus.model.errors import FieldError
from op_dbus.model.paths import DOCUMENT, Loc, describe, format_path

MAX_DEPTH = 64
MAX_NODES = 200_000


class _Mapping(dict[Any, Any]):
    """A parsed mapping that remembers the keys it saw more than once."""

    duplicates: list[Any]


def _json_pairs(pairs: list[tuple[str, Any]]) -> _Mapping:
    mapping = _Mapping(pairs)
    mapping.duplicates = _repeated(key for key, _ in pairs)
    return mapping


def _repeated(keys: Any) -> list[Any]:
    seen: set[Any] = set()
    repeated: list[Any] = []
    for key in keys:
        if key in seen and key not in repeated:
            repeated.append(key)
        seen.add(key)
    return repeated


class _YamlLoader(yaml.SafeLoader):
    """SafeLoader whose mappings record duplicate keys (merge keys `<<` may still override)."""


def _yaml_mapping(loader: _YamlLoader, node: yaml.MappingNode) -> _Mapping:
    explicit = [
        loader.construct_object(key, deep=True)
        for key, _ in node.value
        if key.tag != "tag:yaml.org,2002:merge"
    ]
    mapping = _Mapping(loader.construct_mapping(node, deep=True))
    mapping.duplicates = _repeated(explicit)
    return mapping


_YamlLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _yaml_mapping)


def _error(message: str) -> list[FieldError]:
    return [FieldError(DOCUMENT, message)]


def decode(data: str | bytes) -> tuple[Any, list[FieldError]]:
    """Parse `data`; return (tree, []) or (None, errors)."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            return None, _error(f"is not valid UTF-8 (byte {exc.start})")
    data = data.removeprefix("\ufeff")
    if not data.strip():
        return None, _error("is empty")
    try:
        tree = json.loads(data, object_pairs_hook=_json_pairs)
    except (ValueError, RecursionError) as exc:
        json_problem = _json_message(exc)
    else:
        return _plain(tree)
    try:
        tree = yaml.load(data, Loader=_YamlLoader)  # a SafeLoader subclass: no arbitrary objects
    except (yaml.YAMLError, ValueError, TypeError, RecursionError, OverflowError) as exc:
        if data.lstrip().startswith(("{", "[")):
            return None, _error(f"is not valid JSON: {json_problem}")
        return None, _error(f"is neither JSON nor valid YAML: {_yaml_message(exc)}")
    return _plain(tree)


def _json_message(exc: BaseException) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc)


def _yaml_message(exc: BaseException) -> str:
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark else ""
        what = "; ".join(p for p in (exc.context, exc.problem) if p) or "syntax error"
        return " ".join(f"{what}{where}".split())
    if isinstance(exc, yaml.reader.ReaderError) and isinstance(exc.character, int):
        return f"character #x{exc.character:04x} is not allowed (position {exc.position})"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return " ".join(str(exc).split()) or type(exc).__name__


def _plain(tree: Any) -> tuple[Any, list[FieldError]]:
    errors: list[FieldError] = []
    budget = [MAX_NODES]
    try:
        copy = _copy(tree, (), errors, budget, set())
    except _TooBig as exc:
        return None, _error(str(exc))
    return (None, errors) if errors else (copy, [])


def _is_text(value: str) -> bool:
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


class _TooBig(Exception):
    pass


def _copy(node: Any, loc: Loc, errors: list[FieldError], budget: list[int], open_: set[int]) -> Any:
    """A fresh tree; reports non-string and duplicate keys where they are."""
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooBig(f"has more than {MAX_NODES} values; that is not a state file")
    if isinstance(node, str) and not _is_text(node):
        errors.append(FieldError(format_path(loc), "is not valid Unicode text (lone surrogate)"))
        return None
    if not isinstance(node, dict | list):
        return node
    if len(loc) >= MAX_DEPTH:
        raise _TooBig(f"is nested more than {MAX_DEPTH} levels deep at {format_path(loc)}")
    if id(node) in open_:
        errors.append(FieldError(format_path(loc), "refers to itself (a YAML alias cycle)"))
        return None
    open_.add(id(node))
    try:
        if isinstance(node, list):
            return [_copy(v, (*loc, i), errors, budget, open_) for i, v in enumerate(node)]
        for key in getattr(node, "duplicates", ()):
            errors.append(FieldError(format_path((*loc, str(key))), "duplicate key"))
        out = {}
        for key, value in node.items():
            if isinstance(key, str) and not _is_text(key):
                errors.append(FieldError(format_path(loc), "has a key that is not valid Unicode"))
                continue
            if not isinstance(key, str):
                errors.append(
                    FieldError(format_path(loc), f"has a key that is not a string: {describe(key)}")
                )
                continue
            out[key] = _copy(value, (*loc, key), errors, budget, open_)
        return out
    finally:
        open_.discard(id(node))
