"""The MCP surface in-process with the SDK's own client: tools, schemas, annotations, errors.

No host is touched: these calls are refused or fail validation before the API is asked (the
lab tests call the tools against real components)."""

from __future__ import annotations

from typing import Any

from mcp import Client

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
