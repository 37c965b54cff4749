"""The MCP surface in-process with the SDK's own client: tools, schemas, annotations, errors.

No host is touched: these calls are refused or fail validation before the API is asked, or
the API finds no OVSDB (the lab tests call the tools against real components)."""

from __future__ import annotations

from typing import Any

import pytest
from mcp import Client
from mcp.types import ElicitRequestParams, ElicitResult

from op_dbus.api.local import LocalApi
from op_dbus.endpoints import Endpoints
from op_dbus.mcp.service import McpOptions, McpService
from op_dbus.mcp.tools import build_server

READ_TOOLS = {
    "query_state",
    "show_topology",
    "plan",
    "verify",
    "explain_drift",
    "status",
    "doctor",
    "ledger_log",
    "ledger_verify",
    "ledger_proof",
}
WRITE_TOOLS = {"apply_plan", "confirm", "rollback"}
NO_BUS = "unix:path=/nonexistent/op-dbus-test-bus"


def service(tmp_path: Any, *, allow_write: bool) -> McpService:
    endpoints = Endpoints(data_dir=str(tmp_path), system_bus=NO_BUS, ovsdb="unix:/nonexistent")
    api = LocalApi(endpoints, ("systemd", "net", "lxc"), use_ledger=False)
    return McpService(api, endpoints, McpOptions(allow_write=allow_write))


def client(tmp_path: Any, *, allow_write: bool = False) -> Client:
    """The SDK's client on a server in this process (entered in the test's own task:
    the SDK's cancel scopes must be left in the task that entered them)."""
    return Client(build_server(service(tmp_path, allow_write=allow_write)))


def error_of(result: Any) -> dict[str, Any]:
    assert result.is_error, result
    return result.structured_content["error"]


async def test_every_tool_is_listed_with_description_schema_and_annotations(tmp_path: Any) -> None:
    async with client(tmp_path, allow_write=False) as read_only:
        tools = {t.name: t for t in (await read_only.list_tools()).tools}
        assert set(tools) == READ_TOOLS | WRITE_TOOLS
        for name, tool in tools.items():
            assert len(tool.description or "") > 60, name
            assert tool.input_schema["type"] == "object", name
            assert tool.output_schema is not None, name
            hints = tool.annotations
            assert hints is not None, name
            assert hints.read_only_hint is (name in READ_TOOLS), name
        for name in READ_TOOLS:
            assert tools[name].annotations.idempotent_hint is True
        assert tools["apply_plan"].annotations.destructive_hint is True
        assert tools["rollback"].annotations.destructive_hint is True
        assert tools["confirm"].annotations.destructive_hint is False
        apply_args = tools["apply_plan"].input_schema
        assert apply_args["required"] == ["plan_id"]
        assert apply_args["properties"]["confirm_within"]["default"] == 120
        assert apply_args["properties"]["confirm_within"]["minimum"] == 10
        assert set(tools["plan"].output_schema["properties"]) >= {
            "plan_id",
            "revision",
            "text",
            "dangerous",
        }
        assert "read-only" in tools["apply_plan"].description


async def test_writes_are_refused_on_a_read_only_server(tmp_path: Any) -> None:
    async with client(tmp_path, allow_write=False) as read_only:
        for name, args in (("apply_plan", {"plan_id": "0123"}), ("confirm", {}), ("rollback", {})):
            error = error_of(await read_only.call_tool(name, args))
            assert error["kind"] == "AccessDenied", name
            assert error["exit_code"] == 2
            assert error["dbus_name"] == "org.opdbus.Error.AccessDenied"
            assert "--allow-write" in error["message"]


async def test_a_bad_state_document_names_the_field_and_changes_nothing(tmp_path: Any) -> None:
    async with client(tmp_path, allow_write=False) as read_only:
        bad = {
            "net": {
                "interfaces": [
                    {
                        "name": "br0",
                        "type": "ovs-bridge",
                        "ipv4": {"address": [{"ip": "10.0.0.1", "prefix": 99}]},
                    }
                ]
            }
        }
        error = error_of(await read_only.call_tool("plan", {"state": bad}))
        assert error["kind"] == "InvalidInput"
        assert error["message"].startswith("net.interfaces[0].ipv4.address[0].prefix:")
        assert "Error" not in error["message"] and "Traceback" not in error["message"]
        text = error_of(await read_only.call_tool("verify", {"state": "net: [unclosed"}))
        assert text["kind"] == "InvalidInput"


async def test_an_unknown_plan_id_is_refused_before_anything_runs(tmp_path: Any) -> None:
    async with client(tmp_path, allow_write=True) as writable:
        error = error_of(await writable.call_tool("apply_plan", {"plan_id": "feedfeed"}))
        assert error["kind"] == "InvalidInput"
        assert error["message"].startswith("plan_id: no plan 'feedfeed'")


async def test_confirm_within_outside_its_bounds_is_a_validation_error(tmp_path: Any) -> None:
    async with client(tmp_path, allow_write=True) as writable:
        result = await writable.call_tool("apply_plan", {"plan_id": "x", "confirm_within": 5})
        assert result.is_error
        assert "confirm_within" in result.content[0].text


async def test_query_of_an_unknown_section_is_invalid_input(tmp_path: Any) -> None:
    async with client(tmp_path, allow_write=False) as read_only:
        error = error_of(await read_only.call_tool("query_state", {"sections": ["nosuch"]}))
        assert error["kind"] == "InvalidInput"
        assert error["message"].startswith("sections: nosuch")


async def test_ledger_tools_without_a_ledger_say_so(tmp_path: Any) -> None:
    async with client(tmp_path, allow_write=False) as read_only:
        error = error_of(await read_only.call_tool("ledger_log", {}))
        assert error["kind"] == "InvalidInput"
        assert "no ledger" in error["message"]


async def test_resources_are_listed(tmp_path: Any) -> None:
    async with client(tmp_path, allow_write=False) as read_only:
        uris = {str(r.uri) for r in (await read_only.list_resources()).resources}
        assert uris == {
            "opdbus://state/current",
            "opdbus://state/desired",
            "opdbus://ledger/checkpoint",
            "opdbus://topology",
        }


async def test_list_arguments_are_bounded(tmp_path: Any) -> None:
    async with client(tmp_path) as read_only:
        many = await read_only.call_tool("query_state", {"names": ["x*"] * 65})
        long = await read_only.call_tool("query_state", {"names": ["x" * 129]})
    assert many.is_error and "names" in many.content[0].text
    assert long.is_error and "names" in long.content[0].text


DANGEROUS_PLAN = {
    "revision": "0" * 64,
    "dangerous": ["delete net:bridge/mesh"],
    "plugins": [
        {
            "name": "net",
            "actions": [
                {
                    "plugin": "net",
                    "kind": "delete",
                    "resource": "bridge/mesh",
                    "dangerous": ["mesh holds 10.0.0.1, the local end of live TCP sessions"],
                },
                {"plugin": "net", "kind": "create", "resource": "bridge/br1", "dangerous": []},
            ],
        }
    ],
}


def shown_dangerous(served: McpService) -> str:
    """A plan id for a plan with one dangerous action (as `plan` would book it)."""
    sections = {"net": {"interfaces": [{"name": "mesh", "type": "ovs-bridge", "state": "absent"}]}}
    return served.plans.add(sections, "agent", DANGEROUS_PLAN, ["delete net:bridge/mesh"]).plan_id


def user(action: str, content: dict[str, Any] | None = None) -> tuple[Any, list[Any]]:
    asked: list[Any] = []

    async def answer(context: Any, params: ElicitRequestParams) -> ElicitResult:
        asked.append(params)
        return ElicitResult(action=action, content=content)  # type: ignore[arg-type]

    return answer, asked


@pytest.mark.parametrize("mode", ["auto", "legacy"])  # 2026-07-28 input-required; 2025-11-25
@pytest.mark.parametrize(
    ("action", "content"),
    [("decline", None), ("cancel", None), ("accept", {"run_dangerous": False})],
)
async def test_dangerous_actions_the_user_does_not_consent_to_are_refused(
    tmp_path: Any, mode: str, action: str, content: dict[str, Any] | None
) -> None:
    served = service(tmp_path, allow_write=True)
    plan_id = shown_dangerous(served)
    answer, asked = user(action, content)
    async with Client(build_server(served), elicitation_callback=answer, mode=mode) as agent:
        error = error_of(await agent.call_tool("apply_plan", {"plan_id": plan_id}))
    assert error["kind"] == "Refused" and error["exit_code"] == 2
    assert error["message"] == (
        f"plan {plan_id}: dangerous actions need acknowledging: the user was asked and "
        f"answered {'decline' if action == 'accept' else action}; nothing was changed: "
        "delete net:bridge/mesh"
    )
    (question,) = asked
    assert question.message.splitlines()[1] == (
        "- delete net:bridge/mesh: mesh holds 10.0.0.1, the local end of live TCP sessions"
    )
    assert "br1" not in question.message  # only what is dangerous is asked about
    assert question.requested_schema["required"] == ["run_dangerous"]
    served.plans.get(plan_id)  # not used up: the agent may still acknowledge it itself


async def test_a_client_without_elicitation_is_refused_as_before(tmp_path: Any) -> None:
    served = service(tmp_path, allow_write=True)
    plan_id = shown_dangerous(served)
    async with Client(build_server(served)) as agent:
        error = error_of(await agent.call_tool("apply_plan", {"plan_id": plan_id}))
    assert error["kind"] == "Refused"
    assert error["message"] == (
        f"plan {plan_id}: dangerous actions need acknowledging: pass them in `acknowledge`: "
        "delete net:bridge/mesh"
    )


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_consent_given_when_asked_goes_to_the_host_as_acknowledged(
    tmp_path: Any, mode: str
) -> None:
    """Past the consent the engine's Host takes over: here it reads no OVSDB, so the host
    does not read as the booked plan did and nothing is changed (the lab test sees the
    bridge go)."""
    served = service(tmp_path, allow_write=True)
    plan_id = shown_dangerous(served)
    answer, asked = user("accept", {"run_dangerous": True})
    async with Client(build_server(served), elicitation_callback=answer, mode=mode) as agent:
        error = error_of(await agent.call_tool("apply_plan", {"plan_id": plan_id}))
    assert len(asked) == 1
    assert error["message"].startswith("plan: the host changed since the plan was made")


async def test_nobody_is_asked_what_the_agent_acknowledged_or_a_read_only_server_refuses(
    tmp_path: Any,
) -> None:
    answer, asked = user("accept", {"run_dangerous": True})
    writable = service(tmp_path, allow_write=True)
    plan_id = shown_dangerous(writable)
    async with Client(build_server(writable), elicitation_callback=answer) as agent:
        await agent.call_tool(
            "apply_plan", {"plan_id": plan_id, "acknowledge": ["delete net:bridge/mesh"]}
        )
    read_only = service(tmp_path, allow_write=False)
    plan_id = shown_dangerous(read_only)
    async with Client(build_server(read_only), elicitation_callback=answer) as agent:
        error = error_of(await agent.call_tool("apply_plan", {"plan_id": plan_id}))
    assert error["kind"] == "AccessDenied"
    assert asked == []
