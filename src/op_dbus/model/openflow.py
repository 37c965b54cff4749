"""A bridge's OpenFlow rules (`openflow`): structured fields, never a flow string.

Every value is checked against an allowlist here, so nothing a state file holds can add
syntax to the flow text op-dbus writes for `ovs-ofctl` (plugins/net/openflow.py): numbers are
integers, addresses are parsed, port names are interface names (letters, digits, `-_.`), and
actions are words from a fixed list or one-key objects of those types.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator

from op_dbus.model.fields import (
    TABLE_MAX,
    Cidr,
    FlowPriority,
    FlowTable,
    Port,
    Vlan,
    _ranged,
    check_cidr,
    check_ifname,
)
from op_dbus.model.paths import describe, quoted

FLOWS_MAX = 1024
"""At most this many rules per bridge: one bundle, kept reviewable."""
ACTIONS_MAX = 16
PRIORITY_DEFAULT = 32768
"""OpenFlow's (and ovs-ofctl's) priority when a rule names none."""
Proto = Literal["ip", "icmp", "tcp", "udp", "arp", "ipv6", "icmp6", "tcp6", "udp6"]
NW_PROTOS = ("ip", "icmp", "tcp", "udp", "arp")
"""Protocols whose IPv4 source and destination (`nw_src`, `nw_dst`) OpenFlow can match."""
TP_PROTOS = ("tcp", "udp", "tcp6", "udp6")
"""Protocols whose ports (`tp_src`, `tp_dst`) OpenFlow can match."""
WORD_ACTIONS = ("normal", "flood", "local", "in_port", "drop", "strip_vlan")
KEY_ACTIONS = ("output", "mod_vlan_vid", "resubmit", "goto_table")
"""Actions that take a value: a port name, a VLAN id, a table, a table."""
_MAC_CHARS = frozenset("0123456789abcdef")
_table = _ranged(0, TABLE_MAX, "a table")
_vlan = _ranged(0, 4095, "a VLAN tag")
_ACTION_RULE = (
    f"must be one of {', '.join(WORD_ACTIONS)} or an object with one key of "
    f"{', '.join(KEY_ACTIONS)}"
)


def check_any_mac(value: Any) -> str:
    """A MAC address to match (broadcast and multicast too), normalised to lower case."""
    text = value.lower() if isinstance(value, str) else None
    parts = text.split(":") if text is not None else []
    if len(parts) != 6 or any(len(p) != 2 or not set(p) <= _MAC_CHARS for p in parts):
        raise ValueError(f"must be a MAC address like 02:00:00:00:01:00, got {describe(value)}")
    return text or ""


RESERVED_PORTS = frozenset(
    {"in_port", "table", "normal", "flood", "all", "controller", "local", "any", "none", "unset"}
)
"""OpenFlow's reserved port names: ovs-ofctl takes these for the reserved port, even quoted."""


def check_flow_port(value: Any) -> str:
    """A port a rule names: an interface name that ovs-ofctl cannot take for a reserved port."""
    name = check_ifname(value)
    if name.lower() in RESERVED_PORTS:
        raise ValueError(
            f"{describe(name)} is an OpenFlow reserved port name; a rule cannot name a port so "
            'called (the bridge\'s own port is "local" as an action, its name as in_port)'
        )
    return name


FlowPort = Annotated[
    str,
    BeforeValidator(check_flow_port),
    WithJsonSchema({"type": "string", "minLength": 1, "maxLength": 15}),
]


def check_flow_action(value: Any) -> str | dict[str, Any]:
    """One action: a word, or `{"output": port}`, `{"mod_vlan_vid": id}`, `{"resubmit": table}`,
    `{"goto_table": table}`."""
    if isinstance(value, str):
        if value not in WORD_ACTIONS:
            raise ValueError(f"{_ACTION_RULE}, got {describe(value)}")
        return value
    if not isinstance(value, dict) or len(value) != 1:
        raise ValueError(f"{_ACTION_RULE}, got {describe(value)}")
    [(key, arg)] = value.items()
    if key == "output":
        return {key: check_flow_port(arg)}
    if key == "mod_vlan_vid":
        return {key: _vlan(arg)}
    if key in ("resubmit", "goto_table"):
        return {key: _table(arg)}
    raise ValueError(f"{_ACTION_RULE}, got the key {quoted(str(key))}")


FlowAction = Annotated[
    str | dict[str, Any],
    BeforeValidator(check_flow_action),
    WithJsonSchema(
        {
            "anyOf": [
                {"enum": list(WORD_ACTIONS)},
                {
                    "type": "object",
                    "properties": {
                        "output": {"type": "string"},
                        "mod_vlan_vid": {"type": "integer", "minimum": 0, "maximum": 4095},
                        "resubmit": {"type": "integer", "minimum": 0, "maximum": TABLE_MAX},
                        "goto_table": {"type": "integer", "minimum": 0, "maximum": TABLE_MAX},
                    },
                    "minProperties": 1,
                    "maxProperties": 1,
                    "additionalProperties": False,
                },
            ]
        }
    ),
]
AnyMac = Annotated[
    str,
    BeforeValidator(check_any_mac),
    WithJsonSchema({"type": "string", "pattern": "^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$"}),
]


class FlowMatch(BaseModel):
    """What a rule matches; a field left out matches anything."""

    model_config = ConfigDict(extra="forbid", strict=True)

    in_port: FlowPort | None = None
    dl_vlan: Vlan | None = None
    dl_src: AnyMac | None = None
    dl_dst: AnyMac | None = None
    proto: Proto | None = None
    nw_src: Cidr | None = None
    nw_dst: Cidr | None = None
    tp_src: Port | None = None
    tp_dst: Port | None = None

    @model_validator(mode="after")
    def _prerequisites(self) -> FlowMatch:
        """OpenFlow refuses a field whose protocol the rule does not pin down."""
        for name, protos in (("nw_src", NW_PROTOS), ("nw_dst", NW_PROTOS)):
            if getattr(self, name) is not None and self.proto not in protos:
                raise ValueError(f"{name} needs proto set to one of {', '.join(protos)}")
        for name in ("tp_src", "tp_dst"):
            if getattr(self, name) is not None and self.proto not in TP_PROTOS:
                raise ValueError(f"{name} needs proto set to one of {', '.join(TP_PROTOS)}")
        return self


class FlowRule(BaseModel):
    """One OpenFlow rule of a bridge, installed under op-dbus's cookie."""

    model_config = ConfigDict(extra="forbid", strict=True)

    table: FlowTable = 0
    priority: FlowPriority = PRIORITY_DEFAULT
    match: FlowMatch = Field(default_factory=FlowMatch)
    actions: Annotated[list[FlowAction], Field(min_length=1, max_length=ACTIONS_MAX)]

    @model_validator(mode="after")
    def _drop_alone(self) -> FlowRule:
        if "drop" in self.actions and len(self.actions) > 1:
            raise ValueError('"drop" must be the only action of its rule')
        return self


def normal_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """A rule in one spelling (defaults written out, match keys sorted, nulls left out), so
    a file's rule and one read back from the switch compare equal."""
    match = {k: v for k, v in sorted((rule.get("match") or {}).items()) if v is not None}
    return {
        "table": rule.get("table", 0),
        "priority": rule.get("priority", PRIORITY_DEFAULT),
        "match": match,
        "actions": list(rule.get("actions") or []),
    }


def _spelled(key: str, value: Any) -> Any:
    """A match value as its validator normalises it (the value itself when invalid: the
    field's own error reports that)."""
    checks = {"nw_src": check_cidr, "nw_dst": check_cidr, "dl_src": check_any_mac}
    check = checks.get(key, check_any_mac if key == "dl_dst" else None)
    try:
        return check(value) if check else value
    except ValueError:
        return value


def flow_rule_errors(rules: Any, bridge: str) -> list[tuple[tuple[int | str, ...], str]]:
    """(relative location, message) of each rule of `bridge` the switch could not keep as
    written: two with the same table, priority and match (it keeps only the last), and an
    output to the bridge itself (the switch lists that as `local`)."""
    seen: dict[str, int] = {}
    found: list[tuple[tuple[int | str, ...], str]] = []
    for i, rule in enumerate(rules if isinstance(rules, list) else []):
        if not isinstance(rule, dict) or not isinstance(rule.get("match", {}), dict):
            continue
        actions = rule.get("actions")
        for j, action in enumerate(actions if isinstance(actions, list) else []):
            if isinstance(action, dict) and action.get("output") == bridge:
                found.append(((i, "actions", j), '"output" to the bridge itself is "local"'))
        match = {k: _spelled(k, v) for k, v in (rule.get("match") or {}).items()}
        table, priority = rule.get("table", 0), rule.get("priority", PRIORITY_DEFAULT)
        key = repr((table, priority, sorted(match.items())))
        if key in seen:
            why = f"has the table, priority and match of rule [{seen[key]}]; the switch keeps one"
            found.append(((i,), why))
        else:
            seen[key] = i
    return found
