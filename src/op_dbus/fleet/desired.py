"""What one host should be, from the desired keys: its groups' states, then its own.

Layers, in this order, each laid over the previous with `engine.overlay`: the state of every
group the host is a member of, by group name; for a group under a rollout that released this
host, the rollout's state instead; last the host's own state. Each layer and the merged
result are validated by the model's loader: an invalid layer makes the whole desired state
invalid (reported, never applied in part).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from op_dbus.engine.overlay import overlay
from op_dbus.fleet import keys
from op_dbus.model import Mode, StateInputError
from op_dbus.model.load import MAX_DOCUMENT_BYTES, parse_state
from op_dbus.plugins.base import Section

Mirror = Mapping[str, tuple[bytes, int]]
"""The desired keys as read: key -> (value, mod_revision)."""


@dataclass
class Desired:
    host: str
    sections: dict[str, Section] = field(default_factory=dict)
    revision: int = 0
    """The newest mod_revision of the keys it was made of (0: nothing is desired)."""
    layers: list[str] = field(default_factory=list)
    """The keys that gave a state, in overlay order."""
    errors: list[str] = field(default_factory=list)
    rollouts: dict[str, str] = field(default_factory=dict)
    """Group -> rollout id, for the groups whose rollout state this host takes."""

    @property
    def valid(self) -> bool:
        return not self.errors

    def summary(self) -> dict[str, Any]:
        return {"revision": self.revision, "layers": self.layers, "errors": self.errors}


def groups_of(host: str, mirror: Mirror) -> list[str]:
    groups = []
    for key in mirror:
        rest = keys.tail(key, keys.MEMBERS)
        if rest is not None and rest.count("/") == 1:
            group, member = rest.split("/")
            if member == host:
                groups.append(group)
    return sorted(groups)


def document(sections: Mapping[str, Section]) -> dict[str, Any]:
    return {"version": 1, "plugins": dict(sections)}


def validate(data: bytes, origin: str, mode: Mode | None) -> dict[str, Section]:
    """The sections of a state document (StateInputError with every path when invalid)."""
    return parse_state(data, mode=mode, origin=origin, limit=MAX_DOCUMENT_BYTES).state.sections()


def desired_for(host: str, mirror: Mirror, mode: Mode | None = None) -> Desired:
    result = Desired(host)
    layers: list[dict[str, Section]] = []

    def take(key: str) -> None:
        value, revision = mirror[key]
        result.revision = max(result.revision, revision)
        data = value
        if key.startswith(keys.ACTIVE_ROLLOUT):
            if len(value) > 2 * MAX_DOCUMENT_BYTES:
                result.errors.append(f"{key}: larger than {2 * MAX_DOCUMENT_BYTES} bytes")
                return
            try:
                data = json.dumps(json.loads(value)["state"]).encode()
            except (ValueError, KeyError, TypeError, UnicodeDecodeError):
                result.errors.append(f"{key}: not a rollout record")
                return
        try:
            layers.append(validate(data, key, mode))
        except StateInputError as err:
            result.errors += [str(e) for e in err.errors]
            return
        result.layers.append(key)

    for group in groups_of(host, mirror):
        result.revision = max(result.revision, mirror[keys.member(group, host)][1])
        release = keys.rollout_release(group, host)
        state = keys.rollout_state(group)
        if release in mirror and state in mirror:
            result.revision = max(result.revision, mirror[release][1])
            result.rollouts[group] = _rollout_id(mirror[state][0])
            take(state)
        elif keys.group_state(group) in mirror:
            take(keys.group_state(group))
    if keys.host_state(host) in mirror:
        take(keys.host_state(host))
    if result.errors:
        return result
    merged = overlay({}, *layers, adds=False)  # layers of one document: later lists win
    try:  # rules across layers (a port on a bridge another layer names) hold for the merge
        result.sections = validate(json.dumps(document(merged)).encode(), "merged", mode)
    except StateInputError as err:
        result.errors += [str(e) for e in err.errors]
    return result


def _rollout_id(value: bytes) -> str:
    try:
        return str(json.loads(value).get("id", ""))
    except (ValueError, AttributeError, UnicodeDecodeError):
        return ""
