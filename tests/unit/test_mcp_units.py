"""The MCP server's pure parts: listen addresses, Host names, the plan book, the rate limit,
dangerous-action consent and the topology picture."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from op_dbus.engine.topology import topology
from op_dbus.errors import Busy, InvalidInput, Refused
from op_dbus.mcp.guard import hostname, is_loopback
from op_dbus.mcp.http import HttpOptions, check_policy, parse_listen
from op_dbus.mcp.plans import MAX_PLANS, PLAN_LIFETIME, PlanBook
from op_dbus.mcp.service import McpOptions, McpService, RateLimit
from op_dbus.mcp.topology import filter_state, with_missing

PLAN = {"revision": "ab" * 32, "dangerous": []}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("9573", ("127.0.0.1", 9573)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),
        ("[::1]:9573", ("::1", 9573)),
        ("localhost:1", ("localhost", 1)),
    ],
)
def test_listen_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen(text) == expected


@given(st.text(max_size=40))
@example("9573²")  # a digit to str.isdigit, not to int()
def test_any_listen_text_parses_or_is_invalid_input(text: str) -> None:
    try:
        address, port = parse_listen(text)
    except InvalidInput as err:
        assert err.message.startswith("--http:")
    else:
        assert 0 < port < 65536 and address


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("127.0.0.1:9573", "127.0.0.1"),
        ("LOCALHOST", "localhost"),
        ("[::1]:9573", "::1"),
        ("[::1", ""),
        ("evil.example:9573", "evil.example"),
    ],
)
def test_host_header_names(header: str, name: str) -> None:
    assert hostname(header) == name


def test_loopback() -> None:
    assert is_loopback("127.0.0.5") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10")


def test_policy_of_where_to_listen() -> None:
    wild = HttpOptions("0.0.0.0", 9573, token_file=None)
    with pytest.raises(InvalidInput, match="loopback"):
        check_policy(wild, allow_write=False)
    with pytest.raises(InvalidInput, match="read-only"):
        check_policy(HttpOptions(token_file=None), allow_write=True)
    warnings = check_policy(HttpOptions("0.0.0.0", 9573, token_file=object()), allow_write=True)  # type: ignore[arg-type]
    assert warnings and "without TLS" in warnings[0]
    assert check_policy(HttpOptions(token_file=None), allow_write=False) == []


def test_the_plan_book_forgets_old_plans_and_keeps_a_bounded_number() -> None:
    now = [1000.0]
    book = PlanBook(clock=lambda: now[0])
    first = book.add({"net": {}}, "standalone", PLAN, [])
    assert book.get(first.plan_id) is first
    now[0] += PLAN_LIFETIME
    with pytest.raises(InvalidInput, match="older than"):
        book.get(first.plan_id)
    ids = [book.add({}, "agent", PLAN, []).plan_id for _ in range(MAX_PLANS + 5)]
    for plan_id in ids[:5]:
        with pytest.raises(InvalidInput):
            book.get(plan_id)
    assert book.get(ids[-1]).revision == PLAN["revision"]


def test_the_rate_limit_counts_per_caller_in_a_sliding_minute() -> None:
    limit = RateLimit(per_minute=2)
    limit.take("a", now=0)
    limit.take("a", now=1)
    limit.take("b", now=1)
    with pytest.raises(Busy, match="try again in 59 s"):
        limit.take("a", now=1)
    limit.take("a", now=60.5)


async def test_dangerous_actions_need_acknowledging_by_name(tmp_path: Any) -> None:
    class NoApi:
        via = "local"

        async def apply(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
            raise AssertionError("a refused plan must not reach the API")

    service = McpService(NoApi(), object(), McpOptions(allow_write=True))  # type: ignore[arg-type]
    shown = service.plans.add({"lxc": {}}, "full", PLAN, ["destroy lxc:container/warp"])
    with pytest.raises(Refused, match="destroy lxc:container/warp"):
        await service.apply_shown(shown.plan_id, 120, [], actor="t", caller="t")
    with pytest.raises(Refused):
        await service.apply_shown(shown.plan_id, 120, ["something else"], actor="t", caller="t")


QUERY = {
    "plugins": {
        "net": {
            "interfaces": [
                {"name": "mesh", "type": "ovs-bridge", "ports": ["p1"],
                 "ipv4": {"address": [{"ip": "10.0.0.1", "prefix": 24}]}},
                {"name": "p1", "type": "ovs-internal", "bridge": "mesh", "vlan": 7},
                {"name": "ovsbr0", "type": "ovs-bridge", "ports": []},
            ]
        },
        "lxc": {
            "containers": [
                {"id": "100", "name": "gateway", "veth": "vi100", "bridge": "mesh",
                 "running": True},
                {"id": "101", "name": "warp", "veth": "vi101", "bridge": None, "running": False},
            ]
        },
        "systemd": {"units": {"ssh.service": {}, "openvswitch.service": {}}},
    }
}  # fmt: skip


def test_topology_wires_containers_to_bridges() -> None:
    picture = topology(QUERY)
    mesh = next(b for b in picture["bridges"] if b["name"] == "mesh")
    assert mesh["addresses"] == ["10.0.0.1/24"]
    assert [(p["name"], p["vlan"], p["container"]) for p in mesh["ports"]] == [
        ("p1", 7, None),
        ("vi100", None, "gateway"),
    ]
    assert picture["detached"] == ["warp"]
    assert {b["name"] for b in picture["bridges"]} == {"mesh", "ovsbr0"}


def test_filters_keep_matching_resources_of_every_section() -> None:
    kept = filter_state(QUERY["plugins"], ["ovs*", "1??", "ssh.*"])
    assert [e["name"] for e in kept["net"]["interfaces"]] == ["ovsbr0"]
    assert [c["name"] for c in kept["lxc"]["containers"]] == ["gateway", "warp"]
    assert list(kept["systemd"]["units"]) == ["ssh.service"]
    assert filter_state(QUERY["plugins"], []) is QUERY["plugins"]


DRIFT_PLAN = {
    "plugins": [
        {
            "name": "net",
            "actions": [
                {"kind": "create", "resource": "port/p2",
                 "after": {"name": "p2", "type": "ovs-internal", "bridge": "mesh", "vlan": 9}},
                {"kind": "create", "resource": "bridge/br9", "after": {"name": "br9"}},
                {"kind": "create", "resource": "port/p9",
                 "after": {"name": "p9", "type": "ovs-internal", "bridge": "br9"}},
                {"kind": "create", "resource": "port/lost", "after": {"bridge": "nowhere"}},
                {"kind": "modify", "resource": "port/p1", "after": {"vlan": 8}},
            ],
        },
        {
            "name": "lxc",
            "actions": [
                {"kind": "create", "resource": "container/xray",
                 "after": {"id": "102", "bridge": "mesh", "veth": "vi102"}},
                {"kind": "delete", "resource": "container/warp"},
            ],
        },
    ]
}  # fmt: skip


def test_the_page_draws_what_drifts_where_it_belongs_with_the_plans_mark() -> None:
    picture = with_missing(topology(QUERY, DRIFT_PLAN), DRIFT_PLAN)
    bridges = {b["name"]: b for b in picture["bridges"]}
    marks = {(b["name"], p["name"]): p["drift"] for b in picture["bridges"] for p in b["ports"]}
    assert marks == {
        ("mesh", "p1"): "modify",
        ("mesh", "vi100"): None,
        ("mesh", "p2"): "create",
        ("br9", "p9"): "create",
    }
    assert bridges["br9"]["drift"] == "create" and bridges["mesh"]["drift"] is None
    assert next(p for p in bridges["mesh"]["ports"] if p["name"] == "p2")["vlan"] == 9
    assert {c["name"]: c["drift"] for c in picture["containers"]} == {
        "gateway": None,
        "warp": "delete",
        "xray": "create",
    }
    assert "port/lost" in picture["missing"]  # no bridge to draw it on: listed
    assert with_missing(topology(QUERY), None) == topology(QUERY)


def test_drift_is_marked_against_the_state_file_with_the_daemons_runtime_changes(
    tmp_path: Any,
) -> None:
    import json

    from op_dbus.endpoints import Endpoints

    state = tmp_path / "state.json"
    state.write_text(json.dumps({"net": {"interfaces": [{"name": "br0", "type": "ovs-bridge"}]}}))
    change = {"net": {"interfaces": [{"name": "br1", "type": "ovs-bridge"}]}}
    runtime = {"base": "x", "changes": [{"actor": "a", "time": "t", "sections": change}]}
    (tmp_path / "runtime.json").write_text(json.dumps(runtime))
    service = McpService(object(), Endpoints(data_dir=str(tmp_path)), McpOptions())  # type: ignore[arg-type]

    def names(sections: Any) -> list[str]:
        return [e["name"] for e in sections["net"]["interfaces"]]

    daemon = {"daemon": {"state_file": str(state)}}
    assert names(service.enforced(daemon)) == ["br0"]
    listed = {**daemon, "runtime_changes": [{"actor": "a", "time": "t", "sections": ["net"]}]}
    assert names(service.enforced(listed)) == ["br0", "br1"]
    twice = {**daemon, "runtime_changes": listed["runtime_changes"] * 2}
    assert service.enforced(twice) is None  # the file is not what the daemon holds
    assert service.enforced({"daemon": None}) is None
    edited = tmp_path / "edited.json"  # an editor's atomic save: as long, a new file
    edited.write_text(state.read_text().replace("br0", "br2"))
    edited.replace(state)
    assert names(service.enforced(daemon)) == ["br2"]  # the file is read again
    state.write_text("net: [unclosed")
    assert service.enforced(daemon) is None
