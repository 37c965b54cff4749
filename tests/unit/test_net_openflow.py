"""A bridge's `openflow` rules: validation at their paths, no value adding flow syntax, the
flow text written, `dump-flows` read back into the file's form, the diff and its dangers."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_net_danger import UPLINK
from test_net_diff import applied_seed

from op_dbus.model import StateInputError, parse_state
from op_dbus.plugins.base import ActionKind
from op_dbus.plugins.net.danger import mark
from op_dbus.plugins.net.diff import diff_net
from op_dbus.plugins.net.openflow import (
    COOKIE,
    MARK_KEY,
    bundle_lines,
    flow_text,
    mark_ops,
    parse_flow,
)

RULE = {
    "table": 1,
    "priority": 200,
    "match": {
        "in_port": "vi100",
        "dl_vlan": 10,
        "dl_src": "02:00:00:00:00:01",
        "dl_dst": "FF:FF:FF:FF:FF:FF",
        "proto": "tcp",
        "nw_src": "10.0.0.0/24",
        "nw_dst": "10.0.0.1",
        "tp_src": 1024,
        "tp_dst": 22,
    },
    "actions": [
        {"output": "vi101"},
        {"mod_vlan_vid": 20},
        "strip_vlan",
        {"resubmit": 2},
        {"goto_table": 3},
        "normal",
    ],
}


def loaded(rules: Any) -> list[dict[str, Any]]:
    """The bridge's rules as validation leaves them (StateInputError when refused)."""
    doc = {"net": {"interfaces": [{"name": "br0", "type": "ovs-bridge", "openflow": rules}]}}
    sections = parse_state(json.dumps(doc)).state.sections()
    return sections["net"]["interfaces"][0]["openflow"]


def problems(rules: Any) -> list[tuple[str, str]]:
    try:
        loaded(rules)
    except StateInputError as exc:
        return [(e.path, e.message) for e in exc.errors]
    return []


def test_a_rule_with_every_field_is_accepted_and_normalised() -> None:
    (rule,) = loaded([RULE])
    assert rule["match"]["dl_dst"] == "ff:ff:ff:ff:ff:ff"
    assert rule["match"]["nw_dst"] == "10.0.0.1/32"


@pytest.mark.parametrize(
    ("rule", "path", "message"),
    [
        (
            {"match": {"in_port": "a,b"}, "actions": ["drop"]},
            ".match.in_port",
            '"," is not allowed',
        ),
        ({"actions": [{"output": "x(y"}]}, ".actions[0]", '"(" is not allowed'),
        ({"actions": ["NORMAL"]}, ".actions[0]", "must be one of normal"),
        ({"actions": ["controller"]}, ".actions[0]", "must be one of normal"),
        ({"actions": [{"output": "a", "drop": 1}]}, ".actions[0]", "an object with one key"),
        ({"actions": [{"learn": "x"}]}, ".actions[0]", 'the key "learn"'),
        ({"actions": [{"resubmit": 254}]}, ".actions[0]", "a table from 0 to 253"),
        ({"actions": [{"mod_vlan_vid": 4096}]}, ".actions[0]", "a VLAN tag from 0 to 4095"),
        ({"actions": []}, ".actions", "at least 1"),
        ({"actions": ["normal", "drop"]}, "", '"drop" must be the only action'),
        ({"table": 254, "actions": ["drop"]}, ".table", "a table from 0 to 253"),
        ({"priority": 65536, "actions": ["drop"]}, ".priority", "a priority from 0 to 65535"),
        ({"match": {"nw_src": "10.0.0.0/24"}, "actions": ["drop"]}, ".match", "nw_src needs"),
        ({"match": {"proto": "icmp", "tp_dst": 1}, "actions": ["drop"]}, ".match", "tp_dst needs"),
        (
            {"match": {"proto": "ip", "nw_src": "10.0.0.1/8"}, "actions": ["drop"]},
            ".match.nw_src",
            "host bits",
        ),
        ({"match": {"dl_src": "02:00:00:00:00"}, "actions": ["drop"]}, ".match.dl_src", "MAC"),
        ({"match": {"proto": "ip,nw_ttl=1"}, "actions": ["drop"]}, ".match.proto", ""),
        ({"match": {"tun_id": 5}, "actions": ["drop"]}, ".match.tun_id", ""),
        ({"actions": [{"output": "br0"}]}, ".actions[0]", '"output" to the bridge itself'),
        ({"actions": [{"output": "Local"}]}, ".actions[0]", "reserved port name"),
        ({"match": {"in_port": "ANY"}, "actions": ["drop"]}, ".match.in_port", "reserved port"),
    ],
)
def test_a_bad_rule_is_refused_at_its_path(rule: dict[str, Any], path: str, message: str) -> None:
    [(where, why)] = problems([rule])  # that one error, and no other
    assert where == f"net.interfaces[0].openflow[0]{path}" and message in why, why


def test_two_rules_the_switch_would_merge_are_refused() -> None:
    same = {"match": {"proto": "ip", "nw_dst": "10.0.0.1"}, "actions": ["drop"]}
    other = {"priority": 32768, "match": {"nw_dst": "10.0.0.1/32", "proto": "ip"}}
    found = problems([same, {**other, "actions": ["normal"]}])
    assert found == [
        (
            "net.interfaces[0].openflow[1]",
            "has the table, priority and match of rule [0]; the switch keeps one",
        )
    ]


SYNTAX = re.compile(r"[,=()\"\s>;]")
"""What in a value would add to, or break out of, the flow syntax around it."""
VALUE = st.one_of(
    st.text(max_size=24),
    st.sampled_from(
        [
            "p1,actions=drop",
            "p1 actions=all",
            'p1"',
            "a(b)",
            "10.0.0.1/24,nw_dst=1.2.3.4",
            "02:00:00:00:00:01,x=1",
            "LOCAL",
            "123",
            "p1\n",
        ]
    ),
)


@given(value=VALUE, field=st.sampled_from(["in_port", "dl_src", "dl_dst", "nw_src", "output"]))
def test_nothing_accepted_adds_flow_syntax(value: str, field: str) -> None:
    rule: dict[str, Any] = {"match": {"proto": "ip"}, "actions": ["drop"]}
    if field == "output":
        rule["actions"] = [{"output": value}]
    else:
        rule["match"][field] = value
    try:
        (accepted,) = loaded([rule])
    except StateInputError:
        return
    kept = accepted["actions"][0]["output"] if field == "output" else accepted["match"][field]
    assert not SYNTAX.search(kept), kept
    text = flow_text(accepted)
    expected = 3 + len(accepted["match"]) + 1  # cookie, table, priority, match..., actions
    assert len(text.split(",")) == expected, text
    assert parse_flow(text.replace(",actions=", " actions="), "br0") == {
        "table": 0,
        "priority": 32768,
        **{k: v for k, v in accepted.items() if k in ("match", "actions")},
    }


def test_the_flow_text_and_the_bundle_of_a_rule() -> None:
    (rule,) = loaded([RULE])
    assert flow_text(rule) == (
        f'cookie={COOKIE:#x},table=1,priority=200,tcp,in_port="vi100",dl_vlan=10,'
        "dl_src=02:00:00:00:00:01,dl_dst=ff:ff:ff:ff:ff:ff,nw_src=10.0.0.0/24,"
        'nw_dst=10.0.0.1/32,tp_src=1024,tp_dst=22,actions=output:"vi101",mod_vlan_vid:20,'
        "strip_vlan,resubmit(,2),goto_table:3,NORMAL"
    )
    assert bundle_lines([rule]) == [
        f"delete cookie={COOKIE:#x}/-1",  # mask -1: exactly our cookie, never foreign flows
        f"add {flow_text(rule)}",
    ]
    assert bundle_lines([]) == [f"delete cookie={COOKIE:#x}/-1"]


DUMPED = [  # ovs-ofctl 3.1 -O OpenFlow14 --no-stats --names dump-flows, as it lists them
    (
        " cookie=0x6f7064627573, priority=100,ip,in_port=p1,nw_src=10.0.0.0/24,nw_dst=10.0.0.1"
        " actions=drop",
        {"table": 0, "priority": 100, "actions": ["drop"],
         "match": {"in_port": "p1", "nw_dst": "10.0.0.1/32", "nw_src": "10.0.0.0/24",
                   "proto": "ip"}},
    ),
    (
        ' cookie=0x6f7064627573, priority=100,tcp,in_port="123",dl_vlan=10,'
        "dl_src=02:00:00:00:00:01,tp_dst=22 actions=output:p1,set_field:4101->vlan_vid,pop_vlan,"
        "resubmit(,1),NORMAL",
        {"table": 0, "priority": 100,
         "match": {"dl_src": "02:00:00:00:00:01", "dl_vlan": 10, "in_port": "123",
                   "proto": "tcp", "tp_dst": 22},
         "actions": [{"output": "p1"}, {"mod_vlan_vid": 5}, "strip_vlan", {"resubmit": 1},
                     "normal"]},
    ),
    (
        " cookie=0x6f7064627573, table=1, arp,arp_spa=10.0.0.5 actions=FLOOD",
        {"table": 1, "priority": 32768, "match": {"nw_src": "10.0.0.5/32", "proto": "arp"},
         "actions": ["flood"]},
    ),
    (
        " cookie=0x6f7064627573, in_port=LOCAL actions=output:LOCAL,IN_PORT,goto_table:3",
        {"table": 0, "priority": 32768, "match": {"in_port": "br0"},
         "actions": ["local", "in_port", {"goto_table": 3}]},
    ),
]  # fmt: skip


@pytest.mark.parametrize(("line", "rule"), DUMPED)
def test_dumped_flows_read_back_in_the_files_form(line: str, rule: dict[str, Any]) -> None:
    assert parse_flow(line.strip(), "br0") == rule


@pytest.mark.parametrize(
    "line",
    [
        "cookie=0x6f7064627573, priority=9,icmp6,ipv6_src=fd00::/64 actions=drop",
        "cookie=0x6f7064627573, idle_timeout=5, priority=9 actions=drop",
        "cookie=0x6f7064627573, priority=9 actions=learn(table=1)",
        "cookie=0x6f7064627573, priority=9 actions=",
    ],
)
def test_a_flow_op_dbus_does_not_write_reads_as_unrecognised(line: str) -> None:
    found = parse_flow(line, "br0")
    assert found["unrecognised"] == line


def bridge_with(rules: list[dict[str, Any]] | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": "ovsbr0", "type": "ovs-bridge"}
    return entry if rules is None else {**entry, "openflow": rules}


def current_with(rules: list[dict[str, Any]]) -> dict[str, Any]:
    current = applied_seed()
    next(e for e in current["interfaces"] if e["name"] == "ovsbr0")["openflow"] = rules
    return current


def test_a_query_pasted_back_plans_nothing_and_a_change_is_one_bundle() -> None:
    (rule,) = loaded([{"match": {"proto": "ip", "nw_dst": "10.0.0.1"}, "actions": ["drop"]}])
    read = parse_flow(f"cookie={COOKIE:#x}, ip,nw_dst=10.0.0.1 actions=drop", "ovsbr0")
    current = current_with([read])
    assert diff_net(current, {"interfaces": [bridge_with([rule])]}) == []
    assert diff_net(current, {"interfaces": [bridge_with([read])]}) == []

    changed = {**rule, "actions": ["normal"]}
    (action,) = diff_net(current, {"interfaces": [bridge_with([changed])]})
    assert (action.kind, action.resource) == (ActionKind.MODIFY, "openflow/ovsbr0")
    assert action.before == {"openflow": [read]}
    assert action.after["openflow"][0]["actions"] == ["normal"]


def test_a_bridge_that_declares_no_openflow_keeps_its_flows_even_when_pruned() -> None:
    current = current_with([{"table": 0, "priority": 1, "match": {}, "actions": ["drop"]}])
    for options in ({}, {"prune": True}, {"exhaustive": True}):
        actions = diff_net(current, {"interfaces": [bridge_with(None)]}, **options)
        assert not [a for a in actions if a.resource.startswith("openflow/")], options
    (action,) = diff_net(current, {"interfaces": [bridge_with([])]})
    assert action.after == {"name": "ovsbr0", "openflow": []}


def test_changing_the_uplink_bridges_flows_is_dangerous() -> None:
    actions = diff_net(current_with([]), {"interfaces": [bridge_with([RULE | {"match": {}}])]})
    (marked,) = mark(current_with([]), actions, UPLINK)
    assert marked.dangerous == (
        "changes openflow: ovsbr0 carries the default route via 192.168.1.1",
    )


@given(line=st.text(max_size=200))
def test_any_dumped_line_reads_as_a_rule_or_as_unrecognised(line: str) -> None:
    found = parse_flow(line, "br0")
    assert "unrecognised" in found or set(found) == {"table", "priority", "match", "actions"}


def test_marks_are_set_on_bridges_left_with_rules_and_removed_from_the_others() -> None:
    with_rules = diff_net(current_with([]), {"interfaces": [bridge_with([RULE])]})
    without = diff_net(current_with([RULE]), {"interfaces": [bridge_with([])]})
    (mark_op,) = mark_ops(with_rules)
    (unmark_op,) = mark_ops(without)
    where = [["name", "==", "ovsbr0"]]
    insert = ["external_ids", "insert", ["map", [[MARK_KEY, "true"]]]]
    assert mark_op == {"op": "mutate", "table": "Bridge", "where": where, "mutations": [insert]}
    assert unmark_op["mutations"] == [["external_ids", "delete", ["set", [MARK_KEY]]]]
