"""run_tool against real programs: its bounds, the words of its refusals, the locale tools get."""

from __future__ import annotations

import pytest

from op_dbus.native.lxc import run_process
from op_dbus.native.tool import ToolError, find_tool, run_tool

BOUNDS = {"timeout": 5.0, "output_max": 1024}


async def test_stdin_reaches_the_tool_and_its_output_comes_back() -> None:
    assert await run_tool(["cat"], b"flow 1\n", what="cat", **BOUNDS) == b"flow 1\n"


async def test_a_refusal_carries_the_tools_own_words() -> None:
    argv = ["ls", "/nonexistent-op-dbus"]
    with pytest.raises(ToolError, match=r"^ls x: .*nonexistent-op-dbus"):
        await run_tool(argv, None, what="ls x", **BOUNDS)


async def test_a_tool_that_does_not_finish_is_killed_and_named() -> None:
    with pytest.raises(ToolError, match=r"sleep did not finish within 0\.2 s"):
        await run_tool(["sleep", "30"], None, what="sleep", timeout=0.2, output_max=10)


async def test_output_beyond_the_bound_is_refused() -> None:
    argv = ["head", "-c", "2048", "/dev/zero"]
    with pytest.raises(ToolError, match="printed more than 1024 bytes"):
        await run_tool(argv, None, what="head", **BOUNDS)


async def test_a_missing_program_is_named() -> None:
    with pytest.raises(ToolError, match="cannot run /nonexistent/tool"):
        await run_tool(["/nonexistent/tool"], None, what="tool", **BOUNDS)


def test_a_tool_missing_from_path_names_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    assert find_tool("sh", "dash").endswith("/sh")
    monkeypatch.setenv("PATH", "/nonexistent-op-dbus")
    with pytest.raises(ToolError, match=r"^sh not found on PATH \(install the dash package\)$"):
        find_tool("sh", "dash")


async def test_tools_run_in_the_c_locale_with_the_rest_of_the_callers_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LC_ALL", "de_DE.UTF-8")
    monkeypatch.setenv("LANG", "de_DE.UTF-8")
    monkeypatch.setenv("OPDBUS_TEST_KEPT", "yes")
    via_tool = (await run_tool(["env"], None, what="env", timeout=5.0, output_max=1 << 20)).decode()
    via_lxc = (await run_process(["env"], 5.0)).stdout
    for seen in (via_tool, via_lxc):
        lines = seen.splitlines()
        assert "LC_ALL=C" in lines
        assert "OPDBUS_TEST_KEPT=yes" in lines


async def test_run_process_reports_failure_and_timeout_as_results() -> None:
    failed = await run_process(["ls", "/nonexistent-op-dbus"], 5.0)
    assert failed.returncode != 0 and "nonexistent-op-dbus" in failed.stderr
    slow = await run_process(["sleep", "30"], 0.2)
    assert (slow.returncode, slow.stdout) == (-1, "")
    assert slow.stderr.startswith("timed out after")
