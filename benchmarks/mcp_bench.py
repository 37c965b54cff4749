"""The MCP server inside the daemon (`op-dbus run --mcp-http`), in a lab of its own, after the
daemon's boot apply of the seed's Full-mode file.

- tools/call query_state over HTTP (the SDK's client, one session, token in the header): the
  daemon answers from its cache. Baseline: reading the host directly (every plugin's query()).
- tools/call plan of the seed's file (a no-op plan: the daemon applied it at boot). Baseline:
  `op-dbus diff` of the same file, the command a user would otherwise run.
Both clients run inside the lab netns, where the daemon listens; medians of RUNS calls.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import bench_lab, median
from daemon_bench import DIRECT_QUERY, row

from op_dbus.lab import Lab, run_in_lab

SEED = Path(__file__).resolve().parent.parent / "examples" / "full-mode.json"
PORT = 9573
RUNS = 50
CLIENT = """
import asyncio, json, sys, time
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

async def main(url, token, path, runs):
    state = open(path).read()
    http = httpx2.AsyncClient(headers={"Authorization": "Bearer " + token}, timeout=60)
    out = {"query": [], "plan": []}
    async with Client(streamable_http_client(url, http_client=http)) as client:
        for tool, args in (("query_state", {}), ("plan", {"state": state})):
            await client.call_tool(tool, args)  # warm: the session, the cache
            key = "query" if tool == "query_state" else "plan"
            for _ in range(runs):
                started = time.perf_counter()
                result = await client.call_tool(tool, args)
                out[key].append(time.perf_counter() - started)
                assert not result.is_error, result.content[0].text
    print(json.dumps(out))

asyncio.run(main(*sys.argv[1:4], int(sys.argv[4])))
"""


def start_daemon(lab: Lab, workdir: Path) -> subprocess.Popen[bytes]:
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(workdir / "notify"))
    notify.settimeout(300)
    argv = [sys.executable, "-m", "op_dbus", "run", "--state-file", str(SEED)]
    argv += ["--mcp-http", f"127.0.0.1:{PORT}"]
    env = {**os.environ, "NOTIFY_SOCKET": str(workdir / "notify")}
    log = open(os.environ.get("BENCH_DAEMON_LOG", os.devnull), "w")  # noqa: SIM115
    daemon = subprocess.Popen(lab.exec_argv(argv), env=env, stdout=log, stderr=log)
    try:
        while b"READY=1" not in notify.recv(4096):
            pass
    finally:
        notify.close()
    return daemon


def run() -> list[dict[str, object]]:
    with bench_lab("opdbus-bench-m") as lab:
        workdir = Path(tempfile.mkdtemp(prefix="opd-bench-", dir="/tmp"))
        daemon = start_daemon(lab, workdir)
        try:
            token = run_in_lab(lab, sys.executable, "-m", "op_dbus", "mcp", "token").stdout.strip()
            time.sleep(1)  # uvicorn listens a moment after READY
            url = f"http://127.0.0.1:{PORT}/mcp"
            done = run_in_lab(lab, sys.executable, "-c", CLIENT, url, token, str(SEED), str(RUNS))
            times = json.loads(done.stdout)
            direct = json.loads(run_in_lab(lab, sys.executable, "-c", DIRECT_QUERY, "10").stdout)
            diff = median(
                lambda: run_in_lab(
                    lab, sys.executable, "-m", "op_dbus", "diff", str(SEED), check=False
                ),
                5,
            )
        finally:
            daemon.terminate()
            daemon.wait(timeout=60)
            (workdir / "notify").unlink()
            workdir.rmdir()
    query, plan = statistics.median(times["query"]), statistics.median(times["plan"])
    return [
        row(
            "tools/call query_state over HTTP, from the daemon's cache, vs direct query",
            query,
            statistics.median(direct),
            "< 20 ms median",
            query < 0.020,
        ),
        row(
            "tools/call plan of the seed's file over HTTP vs `op-dbus diff` of it",
            plan,
            diff,
            "< 100 ms median",
            plan < 0.100,
        ),
    ]
