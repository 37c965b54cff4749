"""Plans for people, rendered from the plan JSON every surface shares (`Plan.to_json()`)."""

from __future__ import annotations

import io

from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from op_dbus.cli.render import plan_text, render_plan
from op_dbus.engine.plan import Plan, PluginPlan
from op_dbus.plugins.base import Action, ActionKind
from op_dbus.plugins.lxc.diff import diff_lxc
from op_dbus.plugins.net.diff import diff_net

CURRENT_NET = {
    "interfaces": [
        {
            "name": "old",
            "type": "ovs-bridge",
            "owned": True,
            "ofport": 65534,
            "ports": ["vi100", "p1"],
            "external_ids": {"op-dbus-owner": "op-dbus"},
        },
        {
            "name": "vi100",
            "type": "ovs-port",
            "bridge": "old",
            "owned": False,
            "external_ids": {"op-dbus-container": "gateway"},
        },
        {"name": "p1", "type": "ovs-port", "bridge": "old", "owned": True, "ofport": 1},
        {
            "name": "up",
            "type": "ovs-bridge",
            "owned": True,
            "ipv4": {"enabled": True, "address": [{"ip": "10.0.0.1", "prefix": 24}]},
        },
    ]
}
DESIRED_NET = {
    "interfaces": [
        {"name": "new", "type": "ovs-bridge", "ports": ["eth0"], "stp": True},
        {
            "name": "up",
            "type": "ovs-bridge",
            "ipv4": {"enabled": True, "address": [{"ip": "10.0.0.2", "prefix": 24}]},
        },
    ]
}
DESIRED_LXC = {"containers": [{"id": "100", "name": "gateway", "veth": "vi100", "bridge": "new"}]}


def plan_json() -> dict:
    net = PluginPlan(
        "net", "ready", "", CURRENT_NET, DESIRED_NET, diff_net(CURRENT_NET, DESIRED_NET, prune=True)
    )
    lxc = PluginPlan("lxc", "ready", "", {"containers": []}, DESIRED_LXC, diff_lxc({}, DESIRED_LXC))
    return Plan([net, lxc]).to_json()


def test_a_create_is_one_set_attribute_per_line_without_nulls() -> None:
    text = plan_text(plan_json())
    assert "null" not in text and "(none)" not in text.split("~ ipv4/up")[0]
    block = text.split("+ container/gateway\n", 1)[1].split("\n\n")[0].splitlines()
    assert '      + id        = "100"' in block
    assert '      + bridge    = "new"' in block
    assert not any("memory" in line or "cpus" in line for line in block), "unset: not shown"
    assert "{" not in text, "no JSON objects on one line"


def test_a_new_bridge_shows_its_fields_and_the_ports_planned_onto_it() -> None:
    text = plan_text(plan_json())
    bridge = text.split("+ bridge/new\n", 1)[1].split("\n  + ", 1)[0]
    assert "+ stp   = true" in bridge and '+ ports = ["eth0"]' in bridge


def test_a_modify_shows_only_changed_fields_never_its_identity() -> None:
    text = plan_text(plan_json())
    ipv4 = text.split("~ ipv4/up\n", 1)[1].split("\n")[0]
    assert ipv4.strip() == "~ address = [10.0.0.1/24] -> [10.0.0.2/24]"
    assert "name" not in text.split("~ ipv4/up", 1)[1].split("lxc")[0]


def test_a_delete_shows_its_details_and_what_goes_with_it() -> None:
    text = plan_text(plan_json())
    bridge = text.split("- bridge/old\n", 1)[1].split("\n  + ", 1)[0]
    assert "its ports go with it: vi100, p1; containers gateway lose their link" in bridge
    assert '- type = "ovs-bridge"' in bridge
    assert "ofport" not in bridge and "owned" not in bridge, "facts are not details"
    assert "op-dbus-owner" not in bridge, "ownership marks are op-dbus's own"


def test_the_summary_line_counts_and_dangerous_marks_have_their_place() -> None:
    plan = plan_json()
    plan["plugins"][0]["actions"][0]["dangerous"] = ["deletes the uplink bridge"]
    text = plan_text(plan)
    assert text.rstrip().endswith("Plan: 3 to create, 1 to change, 1 to delete.")
    assert "      ! deletes the uplink bridge" in text.split("- bridge/old", 1)[1].split("\n")[1]


def test_a_terminal_gets_colour_and_a_pipe_the_same_text_without() -> None:
    plan = plan_json()
    tty = io.StringIO()
    render_plan(Console(file=tty, force_terminal=True, color_system="standard"), plan)
    pipe = io.StringIO()
    render_plan(Console(file=pipe, force_terminal=False), plan)
    assert "\x1b[" in tty.getvalue() and "\x1b[" not in pipe.getvalue()
    assert "+ container/gateway" in pipe.getvalue() and pipe.getvalue().startswith("Plan\n")


@given(
    st.dictionaries(
        st.text(alphabet="abcdefgh_", min_size=1, max_size=8),
        st.none() | st.booleans() | st.integers() | st.text(alphabet="abc xyz", max_size=8),
        max_size=6,
    )
)
def test_no_null_is_ever_shown_for_a_create(after: dict) -> None:
    action = Action("lxc", ActionKind.CREATE, "container/x", None, {"name": "x", **after})
    plan = Plan([PluginPlan("lxc", "ready", "", {}, {}, [action])]).to_json()
    text = plan_text(plan)
    assert "null" not in text
    for key, value in after.items():
        if value is not None and key != "name":
            assert f" {key}" in text


def test_an_unreachable_backend_says_what_to_do(monkeypatch) -> None:
    from op_dbus.cli.render import explain

    denied = "cannot connect to OVSDB at unix:/run/db.sock: [Errno 13] Permission denied"
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert explain(denied) == (
        "cannot connect to OVSDB at unix:/run/db.sock: Permission denied; "
        "needs root (run as root or through the daemon)"
    )
    missing = "no systemd on unix:path=/run/dbus/system_bus_socket"
    assert explain(missing).endswith("(see `op-dbus doctor`)")
    plan = {
        "pending": False,
        "summary": {"create": 0, "modify": 0, "delete": 0, "blocked": ["net"], "refused": []},
        "plugins": [{"name": "net", "status": "unavailable", "reason": missing, "actions": []}],
    }
    assert "see `op-dbus doctor`" in plan_text(plan)


def test_a_change_of_openflow_rules_shows_each_rule_that_goes_and_comes_in_words() -> None:
    kept = {"table": 0, "priority": 1, "match": {}, "actions": ["normal"]}
    gone = {"table": 0, "priority": 100, "match": {"in_port": "p1", "proto": "ip"},
            "actions": ["drop"]}  # fmt: skip
    added = {"table": 1, "priority": 5, "match": {"dl_vlan": 10},
             "actions": [{"output": "p2"}, "strip_vlan"]}  # fmt: skip
    current = {"interfaces": [{"name": "br0", "type": "ovs-bridge", "openflow": [kept, gone]}]}
    desired = {"interfaces": [{"name": "br0", "type": "ovs-bridge", "openflow": [kept, added]}]}
    plan = PluginPlan("net", "ready", "", current, desired, diff_net(current, desired))
    text = plan_text(Plan([plan]).to_json())
    block = text.split("~ openflow/br0\n", 1)[1].split("\n\n")[0].splitlines()
    assert [line.strip() for line in block[:2]] == [
        "- rule table 0, priority 100: in_port p1, proto ip -> drop",
        "+ rule table 1, priority 5: dl_vlan 10 -> output p2, strip_vlan",
    ]
    assert "{" not in text and "priority 1:" not in text, "a kept rule is not shown"
