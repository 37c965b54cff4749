"""An agent's session against the lab over MCP (the SDK's client; the server `op-dbus mcp
--allow-write` runs inside the lab netns on stdio, as an MCP host would start it).

Checked with the stock tools: `ovs-vsctl` says what the host is, `op-dbus ledger log` (not
through MCP) says who changed it.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client, StdioServerParameters
from mcp.client.session import ElicitationFnT
from mcp.types import ElicitRequestParams, ElicitResult, Implementation
from test_danger_probes import MESH_GONE, seeded, session_on_mesh  # noqa: F401 (fixtures)

from op_dbus.lab import Lab, run_in_lab

AGENT = "lab-agent"
BRIDGES = ("mcpbr0", "mcpbr1", "mcpbr2", "mcpbr3", "mcpbr4")


def bridge_state(name: str) -> dict[str, Any]:
    return {"net": {"interfaces": [{"name": name, "type": "ovs-bridge", "ports": []}]}}


def bridges(lab: Lab) -> list[str]:
    return run_in_lab(lab, "ovs-vsctl", "--timeout=10", "list-br").stdout.split()


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def agent(lab: Lab, *args: str, elicitation: ElicitationFnT | None = None) -> Client:
    """The SDK's client on `op-dbus mcp` started in the lab (entered in the test's task);
    with `elicitation`, a client that declares it and answers by it."""
    argv = lab.exec_argv([sys.executable, "-m", "op_dbus", "mcp", *args])
    server = StdioServerParameters(command=argv[0], args=argv[1:])
    return Client(
        server,
        client_info=Implementation(name=AGENT, version="1"),
        elicitation_callback=elicitation,
    )


def user(action: str, content: dict[str, Any] | None = None) -> tuple[ElicitationFnT, list[str]]:
    """An elicitation callback answering `action` (with `content`), and the questions it
    was asked."""
    asked: list[str] = []

    async def answer(context: Any, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params.message)
        return ElicitResult(action=action, content=content)  # type: ignore[arg-type]

    return answer, asked


def ledger(lab: Lab) -> list[dict[str, Any]]:
    out = run_in_lab(lab, sys.executable, "-m", "op_dbus", "ledger", "log", "-n", "200", "--json")
    return [e["entry"] for e in json.loads(out.stdout)["entries"]]


def ok(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content[0].text
    return result.structured_content


@pytest.fixture
def clean(lab: Lab) -> Iterator[None]:
    for name in BRIDGES:
        run_in_lab(lab, "ovs-vsctl", "--timeout=10", "--if-exists", "del-br", name)
    yield
    for name in BRIDGES:
        run_in_lab(lab, "ovs-vsctl", "--timeout=10", "--if-exists", "del-br", name)


async def test_query_state_and_topology_show_what_ovs_vsctl_shows(lab: Lab, clean: None) -> None:
    run_in_lab(lab, "ovs-vsctl", "add-br", "mcpbr0", "--", "set", "bridge", "mcpbr0",
               "datapath_type=netdev")  # fmt: skip
    async with agent(lab) as client:
        state = ok(await client.call_tool("query_state", {"sections": ["net"]}))
        only = ok(await client.call_tool("query_state", {"names": ["mcpbr*"]}))
        picture = ok(await client.call_tool("show_topology", {}))
    names = {e["name"] for e in state["state"]["plugins"]["net"]["interfaces"]}
    assert set(bridges(lab)) <= names
    assert [e["name"] for e in only["state"]["plugins"]["net"]["interfaces"]] == ["mcpbr0"]
    assert set(bridges(lab)) == {b["name"] for b in picture["bridges"]}


async def test_plan_apply_confirm_changes_the_host_and_the_ledger_names_the_agent(
    lab: Lab, clean: None
) -> None:
    async with agent(lab, "--allow-write") as client:
        plan = ok(await client.call_tool("plan", {"state": bridge_state("mcpbr0")}))
        assert plan["plan_id"] and len(plan["revision"]) == 64
        assert "mcpbr0" in plan["text"] and plan["summary"]["create"] == 1
        assert plan["dangerous"] == []
        assert "mcpbr0" not in bridges(lab)  # planning changed nothing
        applied = ok(
            await client.call_tool("apply_plan", {"plan_id": plan["plan_id"], "confirm_within": 60})
        )
        assert applied["result"]["exit_code"] == 0, applied["result"]["message"]
        assert applied["try"]["seconds_left"] > 0
        assert "mcpbr0" in bridges(lab)
        again = await client.call_tool("apply_plan", {"plan_id": plan["plan_id"]})
        assert again.is_error  # a plan id is used once
        ok(await client.call_tool("confirm", {}))
        status = ok(await client.call_tool("status", {}))
        assert status.get("try") is None
    assert "mcpbr0" in bridges(lab)  # confirmed: kept after the server is gone
    applies = [e for e in ledger(lab) if e.get("type") == "apply"]
    assert f"mcp client={AGENT}" in applies[-1]["actor"]
    confirms = [e for e in ledger(lab) if e.get("type") == "confirm"]
    assert f"mcp client={AGENT}" in confirms[-1]["actor"]


async def test_a_stale_plan_is_refused_and_nothing_changes(lab: Lab, clean: None) -> None:
    async with agent(lab, "--allow-write") as client:
        plan = ok(await client.call_tool("plan", {"state": bridge_state("mcpbr1")}))
        run_in_lab(lab, "ovs-vsctl", "add-br", "mcpbr1", "--", "set", "bridge", "mcpbr1",
                   "datapath_type=netdev", "external_ids:who=someone-else")  # fmt: skip
        refused = await client.call_tool("apply_plan", {"plan_id": plan["plan_id"]})
    assert refused.is_error
    error = refused.structured_content["error"]
    assert error["kind"] == "Refused"
    assert "make a new plan" in error["message"]
    ids = run_in_lab(lab, "ovs-vsctl", "get", "bridge", "mcpbr1", "external_ids").stdout
    assert "someone-else" in ids and "op-dbus" not in ids  # the other writer's bridge, untouched


async def test_an_unconfirmed_try_rolls_back_by_itself(lab: Lab, clean: None) -> None:
    async with agent(lab, "--allow-write") as client:
        plan = ok(await client.call_tool("plan", {"state": bridge_state("mcpbr2")}))
        applied = ok(
            await client.call_tool("apply_plan", {"plan_id": plan["plan_id"], "confirm_within": 10})
        )
        assert applied["result"]["exit_code"] == 0
        assert "mcpbr2" in bridges(lab)
        wait_for(lambda: "mcpbr2" not in bridges(lab), 40, "the try to roll back")
        status = ok(await client.call_tool("status", {}))
    assert status.get("try") is None
    rollbacks = [e for e in ledger(lab) if e.get("type") == "apply" and "timeout" in e["actor"]]
    assert rollbacks and f"mcp client={AGENT}" in rollbacks[-1]["actor"]


@pytest.fixture
def daemon(lab: Lab, tmp_path: Path, clean: None) -> Iterator[None]:
    """`op-dbus run` in the lab (enforcing one bridge): `op-dbus mcp` then goes through it."""
    from test_daemon_lab import Daemon

    runtime = Path(lab.data_dir) / "runtime.json"
    runtime.unlink(missing_ok=True)
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"version": 1, "plugins": bridge_state("mcpbr3")}))
    started = Daemon(lab, state)
    try:
        started.wait_message("READY=1")
        yield
    finally:
        started.close()
        runtime.unlink(missing_ok=True)


async def test_a_try_confirmed_or_rolled_back_through_the_daemon_names_the_client(
    lab: Lab, daemon: None
) -> None:
    async with agent(lab, "--allow-write") as client:
        status = ok(await client.call_tool("status", {}))
        assert status["mcp"]["via"] == "daemon", status
        for name, decision in (("mcpbr0", "confirm"), ("mcpbr4", "rollback")):
            plan = ok(await client.call_tool("plan", {"state": bridge_state(name)}))
            applied = ok(
                await client.call_tool(
                    "apply_plan", {"plan_id": plan["plan_id"], "confirm_within": 60}
                )
            )
            assert applied["result"]["exit_code"] == 0, applied["result"]["message"]
            assert name in bridges(lab)
            ok(await client.call_tool(decision, {}))
        read = await client.read_resource("opdbus://state/desired")
        desired = json.loads(read.contents[0].text)  # the file and the kept runtime change
    assert "mcpbr0" in bridges(lab) and "mcpbr4" not in bridges(lab)
    declared = {i["name"] for i in desired["state"]["plugins"]["net"]["interfaces"]}
    assert {"mcpbr3", "mcpbr0"} <= declared and "mcpbr4" not in declared, desired
    assert desired["runtime_changes"], desired
    entries = ledger(lab)
    [confirm] = [e for e in entries if e.get("type") == "confirm"][-1:]
    undone = [e for e in entries if e.get("type") == "apply" and e.get("recovers")]
    for who in (confirm["actor"], undone[-1]["actor"]):
        assert "dbus uid=0" in who and f"mcp client={AGENT}" in who, who


async def plan_mesh_gone(client: Client) -> dict[str, Any]:
    plan = ok(await client.call_tool("plan", {"state": {"net": MESH_GONE}}))
    assert plan["dangerous"] == ["delete net:bridge/mesh"], plan["text"]
    return plan


@pytest.mark.parametrize(
    ("action", "content"),
    [("decline", None), ("cancel", None), ("accept", {"run_dangerous": False})],
)
async def test_a_user_who_does_not_consent_when_asked_leaves_the_host_as_it_was(
    seeded: Lab,  # noqa: F811
    session_on_mesh: None,  # noqa: F811
    action: str,
    content: dict[str, Any] | None,
) -> None:
    answer, asked = user(action, content)
    async with agent(seeded, "--allow-write", elicitation=answer) as client:
        plan = await plan_mesh_gone(client)
        refused = await client.call_tool("apply_plan", {"plan_id": plan["plan_id"]})
    assert refused.is_error
    error = refused.structured_content["error"]
    assert error["kind"] == "Refused" and error["exit_code"] == 2
    assert "dangerous actions need acknowledging" in error["message"]
    assert "delete net:bridge/mesh" in error["message"]
    (question,) = asked
    assert "- delete net:bridge/mesh: mesh holds 10.0.0.1" in question
    assert "mesh" in bridges(seeded)


async def test_a_client_without_elicitation_is_told_to_acknowledge(
    seeded: Lab,  # noqa: F811
    session_on_mesh: None,  # noqa: F811
) -> None:
    async with agent(seeded, "--allow-write") as client:
        plan = await plan_mesh_gone(client)
        refused = await client.call_tool("apply_plan", {"plan_id": plan["plan_id"]})
    error = refused.structured_content["error"]
    assert error["kind"] == "Refused"
    assert "pass them in `acknowledge`: delete net:bridge/mesh" in error["message"]
    assert "mesh" in bridges(seeded)


async def test_a_user_who_accepts_runs_exactly_the_dangerous_actions_asked_about(
    seeded: Lab,  # noqa: F811
    session_on_mesh: None,  # noqa: F811
) -> None:
    answer, asked = user("accept", {"run_dangerous": True})
    async with agent(seeded, "--allow-write", elicitation=answer) as client:
        plan = await plan_mesh_gone(client)
        applied = ok(
            await client.call_tool("apply_plan", {"plan_id": plan["plan_id"], "confirm_within": 60})
        )
        assert applied["result"]["exit_code"] == 0, applied["result"]["message"]
        assert "mesh" not in bridges(seeded)
        ok(await client.call_tool("rollback", {}))
    assert len(asked) == 1 and "delete net:bridge/mesh" in asked[0]
    assert "mesh" in bridges(seeded)  # rolled back on request
    applies = [e for e in ledger(seeded) if e.get("type") == "apply"]
    assert any(f"mcp client={AGENT}" in e["actor"] for e in applies[-2:])


async def test_a_plan_without_dangerous_actions_asks_nobody(lab: Lab, clean: None) -> None:
    answer, asked = user("decline")
    async with agent(lab, "--allow-write", elicitation=answer) as client:
        plan = ok(await client.call_tool("plan", {"state": bridge_state("mcpbr0")}))
        ok(await client.call_tool("apply_plan", {"plan_id": plan["plan_id"]}))
        ok(await client.call_tool("rollback", {}))
    assert asked == []
    assert "mcpbr0" not in bridges(lab)
