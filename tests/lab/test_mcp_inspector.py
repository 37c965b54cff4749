"""An independent MCP client (the MCP project's inspector CLI, in node) against op-dbus in
the lab: over stdio (`op-dbus mcp`), and over HTTP from the daemon (`op-dbus run --mcp-http`),
where an agent's plan -> apply_plan -> confirm goes through the daemon's own Host.

The inspector is installed by scripts/install-deps into .cache/node (`make test` runs it)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from op_dbus.lab import Lab, run_in_lab

ROOT = Path(__file__).resolve().parents[2]
INSPECTOR = ROOT / ".cache/node/node_modules/@modelcontextprotocol/inspector-cli/build/index.js"
PORT = 9573
BRIDGE = "inspbr0"


@pytest.fixture(scope="module", autouse=True)
def installed() -> None:
    if not INSPECTOR.exists():
        pytest.fail(f"{INSPECTOR} is missing: run scripts/install-deps (make test does)")


def op_dbus_argv(lab: Lab) -> list[str]:
    """op-dbus with the lab's endpoints as flags: the inspector starts stdio servers with a
    bare environment, and op-dbus must never fall back to the host's own endpoints."""
    env = lab.env()
    return [
        sys.executable, "-m", "op_dbus",
        "--ovsdb", env["OPDBUS_OVSDB"], "--system-bus", env["OPDBUS_SYSTEM_BUS"],
        "--lxc-path", env["OPDBUS_LXC_PATH"], "--data-dir", env["OPDBUS_DATA_DIR"],
    ]  # fmt: skip


def inspector(lab: Lab, *args: str, check: bool = True) -> dict[str, Any]:
    """One inspector call, from its build/ directory: it finds its own package.json (its
    client name) relative to the working directory."""
    done = subprocess.run(
        lab.exec_argv(["node", str(INSPECTOR), *args]),
        cwd=INSPECTOR.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if not check:
        return {"returncode": done.returncode, "stderr": done.stderr}
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout)


def bridges(lab: Lab) -> list[str]:
    return run_in_lab(lab, "ovs-vsctl", "--timeout=10", "list-br").stdout.split()


def test_inspector_over_stdio_lists_tools_and_calls_query_state_and_plan(lab: Lab) -> None:
    server = [*op_dbus_argv(lab), "mcp"]
    tools = inspector(lab, *server, "--method", "tools/list")
    assert {"query_state", "plan", "apply_plan"} <= {t["name"] for t in tools["tools"]}
    queried = inspector(lab, *server, "--method", "tools/call", "--tool-name", "query_state",
                        "--tool-arg", 'sections=["net"]')  # fmt: skip
    names = {
        e["name"] for e in queried["structuredContent"]["state"]["plugins"]["net"]["interfaces"]
    }
    assert set(bridges(lab)) <= names
    state = json.dumps({"net": {"interfaces": [{"name": BRIDGE, "type": "ovs-bridge"}]}})
    planned = inspector(lab, *server, "--method", "tools/call", "--tool-name", "plan",
                        "--tool-arg", f"state={state}")  # fmt: skip
    assert planned["structuredContent"]["plan_id"]
    assert planned["structuredContent"]["summary"]["create"] == 1
    assert BRIDGE not in bridges(lab)


class McpDaemon:
    """`op-dbus run --mcp-http` in the lab netns, stopped by PID."""

    def __init__(self, lab: Lab) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="opd-mcp-"))
        self.log = self.dir / "daemon.log"
        argv = [*op_dbus_argv(lab), "run", "--mcp-http", f"127.0.0.1:{PORT}", "--mcp-allow-write"]
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(lab.exec_argv(argv), stdout=out, stderr=subprocess.STDOUT)

    def stop(self) -> int:
        """SIGTERM by PID; the daemon's exit code (SIGKILL, and -9, if it hangs)."""
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.output = self.log.read_text()
        self.log.unlink()
        self.dir.rmdir()
        return code


@pytest.fixture
def daemon(lab: Lab) -> Iterator[McpDaemon]:
    run_in_lab(lab, "ovs-vsctl", "--timeout=10", "--if-exists", "del-br", BRIDGE)
    started = McpDaemon(lab)
    try:
        yield started
    finally:
        code = started.stop()
        run_in_lab(lab, "ovs-vsctl", "--timeout=10", "--if-exists", "del-br", BRIDGE)
    assert code == 0, f"the daemon serving MCP did not stop cleanly:\n{started.output}"


def test_inspector_over_http_to_the_daemon_plans_applies_and_confirms(
    lab: Lab, daemon: McpDaemon
) -> None:
    token = run_in_lab(lab, *op_dbus_argv(lab), "mcp", "token").stdout.strip()
    url = f"http://127.0.0.1:{PORT}/mcp"
    auth = ("--header", f"Authorization: Bearer {token}")
    deadline = time.monotonic() + 30
    while (listed := inspector(lab, url, *auth, "--method", "tools/list", check=False)).get(
        "returncode"
    ):
        assert daemon.proc.poll() is None, daemon.log.read_text()
        assert time.monotonic() < deadline, f"no MCP on {url}: {listed}\n{daemon.log.read_text()}"
        time.sleep(0.3)
    denied = inspector(lab, url, "--method", "tools/list", check=False)
    assert denied["returncode"] != 0 and "bearer token" in denied["stderr"]

    def call(tool: str, *args: str) -> dict[str, Any]:
        reply = inspector(lab, url, *auth, "--method", "tools/call", "--tool-name", tool, *args)
        assert not reply.get("isError"), reply
        return reply["structuredContent"]

    queried = call("query_state", "--tool-arg", 'sections=["net"]')
    assert "net" in queried["state"]["plugins"]
    state = json.dumps({"net": {"interfaces": [{"name": BRIDGE, "type": "ovs-bridge"}]}})
    planned = call("plan", "--tool-arg", f"state={state}")
    applied = call("apply_plan", "--tool-arg", f"plan_id={planned['plan_id']}",
                   "--tool-arg", "confirm_within=60")  # fmt: skip
    assert applied["result"]["exit_code"] == 0, applied
    assert applied["try"] is not None
    assert BRIDGE in bridges(lab)
    call("confirm")
    status = call("status")
    assert status["daemon"]["pid"] and status["try"] is None
    assert any(BRIDGE in json.dumps(c) or "net" in c["sections"] for c in status["runtime_changes"])
    log = json.loads(
        run_in_lab(lab, *op_dbus_argv(lab), "ledger", "log", "-n", "50", "--json").stdout
    )
    actors = [e["entry"].get("actor", "") for e in log["entries"] if e["entry"]["type"] == "apply"]
    assert "mcp client=inspector-cli token=" in actors[-1]
    assert token not in json.dumps(log)  # the ledger names the token, never holds it
