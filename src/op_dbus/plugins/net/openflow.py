"""A bridge's `openflow` rules: flow text for ovs-ofctl, read back into the file's form.

op-dbus's flows carry its own cookie, COOKIE; every other flow is foreign and never touched.
A bridge's rules in a file are the whole of op-dbus's flows on that bridge, so one bundle
per bridge deletes the flows with our cookie (mask -1: exactly ours) and adds the file's:
the switch commits both or neither. The text is built from validated models only
(model/openflow.py): no value can add flow syntax. Reading back parses `dump-flows` into the
same normal form (model/openflow.py `normal_rule`), so a query pasted back plans nothing; a
flow with our cookie that is not in that form (someone else wrote it) is kept as
`unrecognised` text and replaced by the next apply. A bridge op-dbus keeps rules on carries
MARK_KEY, so a whole query knows which bridges to read.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from op_dbus.model.fields import check_cidr
from op_dbus.model.openflow import PRIORITY_DEFAULT, check_any_mac, normal_rule
from op_dbus.native import ofctl
from op_dbus.plugins.base import Action, ActionKind, ApplyError

COOKIE = 0x6F7064627573
"""op-dbus's flow cookie: "opdbus" in ASCII."""
MARK_KEY = "op-dbus-openflow"
"""In a bridge's external_ids while op-dbus keeps rules on it: a whole query reads the flows
of the bridges so marked only (one ovs-ofctl per bridge, ~20 ms each), not of every bridge."""
RESOURCE = "openflow/"
READS_AT_ONCE = 8
"""Bridges whose flows are read at the same time (one ovs-ofctl each)."""
PROTOS = ("ip", "icmp", "tcp", "udp", "arp", "ipv6", "icmp6", "tcp6", "udp6")
MATCH_ORDER = ("in_port", "dl_vlan", "dl_src", "dl_dst", "nw_src", "nw_dst", "tp_src", "tp_dst")
WORDS = {"normal": "NORMAL", "flood": "FLOOD", "local": "LOCAL", "in_port": "IN_PORT"}
_READ_WORDS = {**{v: k for k, v in WORDS.items()}, "drop": "drop", "strip_vlan": "strip_vlan"}
_READ_WORDS["pop_vlan"] = "strip_vlan"  # how OpenFlow 1.1+ lists strip_vlan
VLAN_PRESENT = 0x1000
"""OpenFlow 1.2+ lists mod_vlan_vid:N as set_field:(0x1000|N)->vlan_vid."""
LOCAL = "LOCAL"
"""How ovs-ofctl names a bridge's own port."""


class Unrecognised(ValueError):
    """A flow with our cookie outside the subset op-dbus writes."""


# --- writing ------------------------------------------------------------------------------
def _name(value: str) -> str:
    """A port name quoted for ovs-ofctl (so "123" or "LOCAL" stay names); names hold only
    `A-Za-z0-9-_.` (validated), so quoting cannot be escaped."""
    return f'"{value}"'


def _action_text(action: str | dict[str, Any]) -> str:
    if isinstance(action, str):
        return WORDS.get(action, action)  # drop, strip_vlan are spelled as they are
    [(key, value)] = action.items()
    if key == "output":
        return f"output:{_name(value)}"
    if key == "resubmit":
        return f"resubmit(,{int(value)})"
    return f"{key}:{int(value)}"  # mod_vlan_vid, goto_table


def flow_text(rule: dict[str, Any]) -> str:
    """One rule as ovs-ofctl's flow syntax, under our cookie."""
    rule = normal_rule(rule)
    match = rule["match"]
    parts = [f"cookie={COOKIE:#x}", f"table={int(rule['table'])}", f"priority={rule['priority']}"]
    if "proto" in match:
        parts.append(match["proto"])
    for key in MATCH_ORDER:
        if key not in match:
            continue
        value = match[key]
        parts.append(f"{key}={_name(value) if key == 'in_port' else value}")
    actions = ",".join(_action_text(a) for a in rule["actions"])
    return f"{','.join(parts)},actions={actions}"


def bundle_lines(rules: list[dict[str, Any]]) -> list[str]:
    """Delete op-dbus's flows on the bridge and add `rules`: one bundle."""
    return [f"delete cookie={COOKIE:#x}/-1", *(f"add {flow_text(rule)}" for rule in rules)]


# --- reading ------------------------------------------------------------------------------
def _split_actions(text: str) -> list[str]:
    """Actions split on the commas outside parentheses (`resubmit(,1)` holds one)."""
    items, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return [item for item in items if item]


def _unquoted(text: str) -> str:
    return text[1:-1] if len(text) > 1 and text[0] == text[-1] == '"' else text


def _read_action(text: str) -> str | dict[str, Any]:
    if text in _READ_WORDS:
        return _READ_WORDS[text]
    key, sep, value = text.partition(":")
    if key == "output" and sep:
        return "local" if value == LOCAL else {"output": _unquoted(value)}
    if key == "set_field" and value.endswith("->vlan_vid") and value[:-10].isdigit():
        return {"mod_vlan_vid": int(value[:-10]) - VLAN_PRESENT}
    if key in ("mod_vlan_vid", "goto_table") and value.isdigit():
        return {key: int(value)}
    if text.startswith("resubmit(,") and text.endswith(")") and text[10:-1].isdigit():
        return {"resubmit": int(text[10:-1])}
    raise Unrecognised(text)


def _read_match(key: str, value: str, bridge: str) -> tuple[str, Any]:
    key = {"arp_spa": "nw_src", "arp_tpa": "nw_dst"}.get(key, key)
    if key == "in_port":
        return key, bridge if value == LOCAL else _unquoted(value)  # "LOCAL": a port so named
    if key in ("dl_vlan", "tp_src", "tp_dst") and value.isdigit():
        return key, int(value)
    if key in ("dl_src", "dl_dst"):
        return key, check_any_mac(value)
    if key in ("nw_src", "nw_dst"):
        return key, check_cidr(value)
    raise Unrecognised(f"{key}={value}")


def parse_flow(line: str, bridge: str) -> dict[str, Any]:
    """One `dump-flows --no-stats --names` line in the rules' normal form, or, when it is
    not one op-dbus writes, `{table, priority, "unrecognised": line}`."""
    head, _, actions = line.partition(" actions=")
    rule: dict[str, Any] = {"table": 0, "priority": PRIORITY_DEFAULT, "match": {}}
    try:
        for token in (t.strip() for t in head.split(",")):
            key, sep, value = token.partition("=")
            if key == "cookie":
                continue
            if key in ("table", "priority") and value.isdigit():
                rule[key] = int(value)
            elif not sep and key in PROTOS:
                rule["match"]["proto"] = key
            elif sep:
                name, parsed = _read_match(key, value, bridge)
                rule["match"][name] = parsed
            else:
                raise Unrecognised(token)
        rule["actions"] = [_read_action(a) for a in _split_actions(actions)]
        if not rule["actions"]:
            raise Unrecognised(line)
    except ValueError:
        return {"table": rule["table"], "priority": rule["priority"], "unrecognised": line}
    return normal_rule(rule)


async def read_flows(rundir: str, bridges: list[str]) -> dict[str, list[dict[str, Any]]]:
    """op-dbus's flows of each bridge, in normal form, sorted; a few bridges at a time."""
    gate = asyncio.Semaphore(READS_AT_ONCE)

    async def one(bridge: str) -> list[dict[str, Any]]:
        async with gate:
            lines = await ofctl.dump_flows(rundir, bridge, COOKIE)
        return sort_rules([parse_flow(line, bridge) for line in lines])

    found = await asyncio.gather(*(one(bridge) for bridge in bridges))
    return dict(zip(bridges, found, strict=True))


# --- diff and apply -----------------------------------------------------------------------
def sort_rules(rules: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rules in one order (the switch has none: priority decides), so lists compare."""
    return sorted(rules, key=lambda r: json.dumps(r, sort_keys=True))


def flow_actions(
    current: dict[str, dict[str, Any]], desired: dict[str, dict[str, Any]]
) -> list[Action]:
    """For each desired bridge that declares `openflow`, the change of op-dbus's flows on it
    (a bridge that does not declare it keeps its flows, even in a rollback)."""
    actions = []
    for name, want in desired.items():
        if want.get("openflow") is None:
            continue
        target = sort_rules([normal_rule(rule) for rule in want["openflow"]])
        have = (current.get(name) or {}).get("openflow") or []
        if target != have:
            before, after = {"openflow": have}, {"name": name, "openflow": target}
            actions.append(Action("net", ActionKind.MODIFY, f"{RESOURCE}{name}", before, after))
    return actions


def mark_ops(actions: list[Action]) -> list[dict[str, Any]]:
    """OVSDB operations marking each bridge of `actions` that now has rules (MARK_KEY set),
    and unmarking those left with none."""
    ops = []
    for action in actions:
        where = [["name", "==", action.after["name"]]]
        if action.after["openflow"]:
            change = ["insert", ["map", [[MARK_KEY, "true"]]]]
        else:
            change = ["delete", ["set", [MARK_KEY]]]
        ops.append({"op": "mutate", "table": "Bridge", "where": where,
                    "mutations": [["external_ids", *change]]})  # fmt: skip
    return ops


async def apply_flows(rundir: str, actions: list[Action], done: list[Action]) -> list[Action]:
    """One bundle per bridge; `done` (what took effect before) grows with each bridge."""
    done = list(done)
    for action in actions:
        try:
            await ofctl.bundle(rundir, action.after["name"], bundle_lines(action.after["openflow"]))
        except ofctl.OfctlError as exc:
            raise ApplyError(action, str(exc), done) from exc
        done.append(action)
    return done
