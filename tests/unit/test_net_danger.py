"""The danger rules: which net actions cut connectivity or destroy work, and why; the socket
table parser they read live sessions with; the Host refusing what nobody confirmed."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from memstore import World
from test_net_diff import applied_seed, bridge, port

from op_dbus.endpoints import Endpoints
from op_dbus.engine.host import Host
from op_dbus.engine.options import ApplyOptions
from op_dbus.errors import Refused
from op_dbus.exitcodes import ExitCode
from op_dbus.native.sockets import parse_table
from op_dbus.native.vswitch import PORT_OWNER_KEY
from op_dbus.plugins.net.danger import Lifelines, mark
from op_dbus.plugins.net.diff import diff_net

UPLINK = Lifelines(
    routes={"ovsbr0": "192.168.1.1"},
    addresses={"ovsbr0": [("192.168.1.10", 24)], "mesh": [("10.0.0.1", 24)]},
    own_routes=frozenset({"ovsbr0"}),
)


def dangers(current: dict[str, Any], desired: dict[str, Any], lines: Lifelines, **kw: Any) -> dict:
    return {a.resource: a.dangerous for a in mark(current, diff_net(current, desired, **kw), lines)}


def test_pruning_the_uplink_bridge_is_dangerous_and_a_plain_one_is_not() -> None:
    current = applied_seed()
    found = dangers(current, {"interfaces": []}, UPLINK, prune=True)
    assert found["bridge/ovsbr0"] == ("ovsbr0 carries the default route via 192.168.1.1",)
    assert found["bridge/mesh"] == ()


def test_removing_the_uplink_port_names_the_route_it_carries() -> None:
    found = dangers(
        applied_seed(),
        {"interfaces": [{"name": "eth0", "type": "ovs-port", "state": "absent"}]},
        UPLINK,
    )
    assert found == {
        "port/eth0": (
            "eth0 is an uplink of ovsbr0, where ovsbr0 carries the default route via 192.168.1.1",
        )
    }


def test_a_bridge_with_running_containers_ports_is_dangerous_to_remove() -> None:
    current = applied_seed()
    current["interfaces"][0]["ports"] = ["vi100", "vi101"]
    ids = {PORT_OWNER_KEY: "gateway"}
    current["interfaces"] += [
        port("vi100", "mesh", owned=False, external_ids=ids, ofport=2),
        port("vi101", "mesh", owned=False, external_ids={PORT_OWNER_KEY: "dead"}, ofport=-1),
    ]
    found = dangers(
        current,
        {"interfaces": [{"name": "mesh", "type": "ovs-bridge", "state": "absent"}]},
        Lifelines(),
    )
    assert found == {"bridge/mesh": ("ports of running containers: gateway",)}


def test_removing_the_address_of_a_live_session_is_dangerous() -> None:
    lines = Lifelines(addresses={"mesh": [("10.0.0.1", 24)]}, sessions=frozenset({"10.0.0.1"}))
    gone = {"ip": "10.0.0.1", "prefix": 24, "state": "absent"}
    desired = {"interfaces": [{"name": "mesh", "type": "ovs-bridge", "ipv4": {"address": [gone]}}]}
    found = dangers(applied_seed(), desired, lines)
    assert found == {"ipv4/mesh": ("removes 10.0.0.1/24, the local end of live TCP sessions",)}
    pruned = dangers(applied_seed(), {"interfaces": []}, lines, prune=True)
    assert pruned["bridge/mesh"] == ("mesh holds 10.0.0.1, the local end of live TCP sessions",)


def test_changing_the_gateway_or_the_uplinks_datapath_is_dangerous_external_ids_are_not() -> None:
    current = applied_seed()
    new_gateway = {"name": "ovsbr0", "type": "ovs-bridge", "ipv4": {"gateway": "192.168.1.2"}}
    assert dangers(current, {"interfaces": [new_gateway]}, UPLINK) == {
        "ipv4/ovsbr0": ("replaces the default route via 192.168.1.1 dev ovsbr0",)
    }
    foreign = Lifelines(routes={"eth0": ""}, addresses=UPLINK.addresses)  # never removed
    assert dangers(current, {"interfaces": [new_gateway]}, foreign) == {"ipv4/ovsbr0": ()}
    datapath = {"name": "ovsbr0", "type": "ovs-bridge", "datapath": "system"}
    (reason,) = dangers(current, {"interfaces": [datapath]}, UPLINK)["bridge/ovsbr0"]
    assert reason.startswith("changes datapath: ovsbr0 carries the default route")
    ids = {"name": "ovsbr0", "type": "ovs-bridge", "external_ids": {"role": "uplink"}}
    assert dangers(current, {"interfaces": [ids]}, UPLINK) == {"bridge/ovsbr0": ()}


def test_adding_an_address_or_a_bridge_is_never_dangerous() -> None:
    more = {"ip": "192.168.1.11", "prefix": 24}
    desired = {
        "interfaces": [
            {"name": "ovsbr0", "type": "ovs-bridge", "ipv4": {"address": [more]}},
            bridge("new0", []),
        ]
    }
    assert all(not why for why in dangers(applied_seed(), desired, UPLINK).values())


TABLE = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid
   0: 0100007F:0277 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0
   1: 0A01A8C0:0016 0101A8C0:C350 01 00000000:00000000 02:000A7D2B 00000000     0
   2: 0100000A:0016 0200000A:C351 06 00000000:00000000 00:00000000 00000000     0
   3: 0100007F:1F90 0100007F:C352 01 00000000:00000000 00:00000000 00000000     0
"""
TABLE6 = """  sl  local_address                         remote_address                        st
   0: 0000000000000000FFFF00000100000A:0016 0000000000000000FFFF00000200000A:D431 01 0
   1: 00000000000000000000000001000000:0016 00000000000000000000000001000000:D432 01 0
"""


def test_the_socket_tables_give_the_local_ends_of_established_sessions_only() -> None:
    # listening (0A) and TIME_WAIT (06) sockets carry nothing; loopback is never an interface's
    assert parse_table(TABLE) == {"192.168.1.10"}
    assert parse_table(TABLE6) == {"10.0.0.1"}  # IPv4-mapped; ::1 is no IPv4 address


@given(st.text(max_size=300))
def test_the_socket_table_parser_takes_any_text(text: str) -> None:
    assert isinstance(parse_table("header\n" + text), set)


def host_over(world: World, tmp_path: Any) -> Host:
    host = Host(Endpoints(data_dir=str(tmp_path)), ("systemd", "net", "lxc"), use_ledger=False)
    host.plugins = dict(world.plugins())
    return host


async def test_the_host_refuses_dangerous_actions_nobody_confirmed(tmp_path: Any) -> None:
    world = World()
    world.stores["net"].data["br0"] = "up"
    world.stores["net"].owned.add("br0")
    world.dangerous.add(("net", "br0"))
    host = host_over(world, tmp_path)
    desired = {"net": {"items": {"br0": None}}}
    plan = await host.plan(desired)
    assert plan.to_json()["dangerous"] == ["delete net:br0"]
    assert plan.to_json()["summary"]["dangerous"] == 1
    before = world.snapshot()
    with pytest.raises(Refused, match=r"not confirmed: delete net:br0 \(marked dangerous"):
        await host.apply(desired, ApplyOptions("test", "full"))
    with pytest.raises(Refused):
        await host.apply(desired, ApplyOptions("test", "full", acknowledge=("delete net:other",)))
    assert world.snapshot() == before
    consent = ApplyOptions("test", "full", acknowledge=("delete net:br0",))
    change = await host.apply(desired, consent)
    assert change.result.exit_code == ExitCode.OK and "br0" not in world.stores["net"].data


async def test_prune_is_a_parameter_of_plan_and_apply(tmp_path: Any) -> None:
    world = World()
    world.stores["net"].data.update({"br0": "up", "foreign": "up"})
    world.stores["net"].owned.add("br0")
    host = host_over(world, tmp_path)
    desired = {"net": {"items": {"br1": "up"}}}
    assert [a.resource for a in (await host.plan(desired)).actions] == ["br1"]
    change = await host.apply(desired, ApplyOptions("test", "full", prune=True, acknowledge=True))
    assert change.result.exit_code == ExitCode.OK
    assert set(world.stores["net"].data) == {"br1", "foreign"}
