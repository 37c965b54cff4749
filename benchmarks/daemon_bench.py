"""The daemon (`op-dbus run`) in a lab of its own: drift repair latency, cached query, idle cost.

- repair: `ovs-vsctl del-port` of a managed port, then the time from the deletion (seen by an
  OVSDB monitor of this benchmark) to the port's row being back, 50 times; median and p95.
  Baseline: an admin's repair by hand, one `ovs-vsctl add-port` (the whole command).
- query: `QueryState` over D-Bus from a connected client vs the direct query (every plugin's
  `query()`), both measured inside one process, so interpreter start-up is in neither.
- idle: the daemon's RSS, and the CPU seconds it uses in 60 s with nothing happening.
- no-op re-apply through the daemon: `busctl call ... ApplyState` (a whole process, in C) with
  a bridge of 1000 internal ports already in place, against the batched
  `ovs-vsctl --may-exist add-br -- --may-exist add-port ...` that net_bench's no-op row uses.
- with those 1000 ports declared (issue 20): the repair latency again, and recurring drift:
  another client deletes the port the moment it is back, 20 times, ~50 ms apart; goal: no
  repair in the ledger rolled back (or failed).
- idle RSS with 1000 bridges declared (ApplyState of 1000 bridges), goal under 150 MB.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import timed

from op_dbus.lab import Lab, run_in_lab
from op_dbus.lab.drift import keep_deleting_port

LAB = "opdbus-bench-d"
BRIDGE, PORT = "benchbr0", "benchp0"
REPAIRS = 50
QUERIES = 50
IDLE_SECONDS = float(os.environ.get("BENCH_IDLE", "60"))
NOOP_PORTS, NOOP_BRIDGE, NOOP_RUNS = 1000, "benchbig0", 5
FIGHTS = 20
MANY_BRIDGES = 1000
STATE = {
    "version": 1,
    "plugins": {
        "net": {
            "interfaces": [
                {"name": BRIDGE, "type": "ovs-bridge", "ports": [PORT]},
                {"name": PORT, "type": "ovs-internal", "bridge": BRIDGE},
            ]
        }
    },
}
DIRECT_QUERY = """
import asyncio, json, statistics, sys, time
from op_dbus.endpoints import Endpoints
from op_dbus.engine.host import Host
async def main(n):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        async with Host(Endpoints.from_env(), ("systemd", "net", "lxc"), use_ledger=False) as h:
            await h.read()
        times.append(time.perf_counter() - t)
    print(json.dumps(times))
asyncio.run(main(int(sys.argv[1])))
"""


def p95(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.95) - 1)]


def vsctl(lab: Lab, *args: str) -> float:
    return timed(lambda: run_in_lab(lab, "ovs-vsctl", "--timeout=10", *args))


async def repair_latencies(lab: Lab) -> list[float]:
    from op_dbus.native.ovsdb import OvsdbClient

    latencies = []
    async with OvsdbClient() as client:
        await client.connect(lab.ovs.db)
        monitor = await client.monitor("Open_vSwitch", {"Port": ["name"]})
        names = {uuid: row["initial"]["name"] for uuid, row in monitor.initial["Port"].items()}
        for _ in range(REPAIRS):
            # ovs-vsctl runs beside the monitor loop, so each update is stamped on arrival
            deleting = asyncio.create_task(asyncio.to_thread(vsctl, lab, "del-port", BRIDGE, PORT))
            deleted = back = None
            while back is None:
                update = await monitor.next(10.0)
                for uuid, change in update.get("Port", {}).items():
                    if "delete" in change and names.pop(uuid, None) == PORT:
                        deleted = time.perf_counter()
                    elif "insert" in change:
                        names[uuid] = change["insert"]["name"]
                        if change["insert"]["name"] == PORT and deleted is not None:
                            back = time.perf_counter()
            await deleting
            latencies.append(back - deleted)
            await asyncio.sleep(0.2)  # let the daemon finish verifying and recording
    return latencies


def repair_codes(lab: Lab, after: int) -> list[int]:
    """Exit codes of the daemon's repairs recorded after ledger entry `after` (their results:
    each repair's intent, written before it, carries no exit code)."""
    from op_dbus.ledger.store import Ledger

    with Ledger.open(lab.data_dir) as ledger:
        values = [entry.value for entry in ledger.entries()][after:]
    return [
        v["result"]["exit_code"]
        for v in values
        if v.get("type") == "apply" and v.get("actor", "").endswith("corrective")
    ]


def ledger_size(lab: Lab) -> int:
    from op_dbus.ledger.store import Ledger

    with Ledger.open(lab.data_dir) as ledger:
        return sum(1 for _ in ledger.entries())


def many_bridges() -> dict[str, Any]:
    """with_big_bridge() plus MANY_BRIDGES bridges (no ports): what it declared stays."""
    kept = with_big_bridge()["plugins"]["net"]["interfaces"]
    more = [{"name": f"bm{i}", "type": "ovs-bridge"} for i in range(MANY_BRIDGES)]
    return {"version": 1, "plugins": {"net": {"interfaces": [*kept, *more]}}}


async def dbus_queries(lab: Lab) -> list[float]:
    from op_dbus.api.daemon import INTERFACE, NAME, PATH
    from op_dbus.native.dbus import call, connect_system_bus

    bus = await connect_system_bus(lab.system_bus)
    try:
        times = []
        for _ in range(QUERIES):
            started = time.perf_counter()
            (text,) = await call(bus, NAME, PATH, INTERFACE, "QueryState")
            json.loads(text)
            times.append(time.perf_counter() - started)
        return times
    finally:
        bus.disconnect()


def with_big_bridge() -> dict[str, Any]:
    """STATE plus a bridge of NOOP_PORTS internal ports (STATE's own entries must stay)."""
    big = [
        {"name": NOOP_BRIDGE, "type": "ovs-bridge", "datapath": "netdev"},
        *(
            {"name": f"bn{i}", "type": "ovs-internal", "bridge": NOOP_BRIDGE}
            for i in range(NOOP_PORTS)
        ),
    ]
    kept = STATE["plugins"]["net"]["interfaces"]
    return {"version": 1, "plugins": {"net": {"interfaces": [*kept, *big]}}}


def busctl_apply(lab: Lab, text: str) -> tuple[float, dict[str, Any]]:
    """One `busctl call ApplyState`, timed as a whole process; and the daemon's result."""
    from op_dbus.api.daemon import INTERFACE, NAME, PATH

    argv = ["busctl", f"--address={lab.system_bus}", "--timeout=300", "--json=short", "call"]
    argv += [NAME, PATH, INTERFACE, "ApplyState", "s", text]
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    elapsed = time.perf_counter() - started
    result = json.loads(json.loads(done.stdout)["data"][0])["result"]
    if result["exit_code"] != 0:
        raise RuntimeError(f"ApplyState failed: {result['message']}")
    return elapsed, result


def noop_through_daemon(lab: Lab) -> tuple[float, float]:
    """Median no-op ApplyState (busctl) and batched --may-exist ovs-vsctl, NOOP_PORTS ports."""
    text = json.dumps(with_big_bridge())
    busctl_apply(lab, text)  # creates the bridge and its ports
    time.sleep(3)  # vswitchd's 1000 new devices are events the daemon checks; let them pass
    noops = []
    for _ in range(NOOP_RUNS):
        elapsed, result = busctl_apply(lab, text)
        if result["applied"]:
            raise RuntimeError(f"the re-apply changed {len(result['applied'])} things")
        noops.append(elapsed)
    argv = ["ovs-vsctl", f"--db={lab.ovs.db}", "--timeout=60", "--may-exist", "add-br", NOOP_BRIDGE]
    for i in range(NOOP_PORTS):
        argv += ["--", "--may-exist", "add-port", NOOP_BRIDGE, f"bn{i}"]
    may_exist = []
    for _ in range(NOOP_RUNS):
        started = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        may_exist.append(time.perf_counter() - started)
    return statistics.median(noops), statistics.median(may_exist)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def row(case: str, seconds: Any, baseline: Any, goal: str = "-", met: Any = None) -> dict:
    return {"case": case, "seconds": seconds, "baseline": baseline, "goal": goal, "met": met}


def run() -> list[dict[str, object]]:
    lab = Lab(LAB)
    lab.up()
    workdir = Path(tempfile.mkdtemp(prefix="opd-bench-", dir="/tmp"))
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(workdir / "notify"))
    notify.settimeout(60)
    state_file = workdir / "state.json"
    state_file.write_text(json.dumps(STATE))
    env = {**os.environ, "NOTIFY_SOCKET": str(workdir / "notify")}
    argv = [sys.executable, "-m", "op_dbus", "run", "--state-file", str(state_file)]
    argv += ["--fight-threshold", str(REPAIRS * 2)]  # 50 deletions in a row are no fight here
    log = open(os.environ.get("BENCH_DAEMON_LOG", os.devnull), "w")  # noqa: SIM115
    daemon = subprocess.Popen(lab.exec_argv(argv), env=env, stdout=log, stderr=log)
    try:
        while b"READY=1" not in notify.recv(4096):
            pass
        repairs = asyncio.run(repair_latencies(lab))
        by_hand = [
            vsctl(
                lab,
                "--may-exist",
                "add-port",
                BRIDGE,
                f"hand{i}",
                "--",
                "set",
                "Interface",
                f"hand{i}",
                "type=internal",
            )
            for i in range(5)
        ]
        for i in range(5):
            vsctl(lab, "--if-exists", "del-port", BRIDGE, f"hand{i}")
        via_dbus = asyncio.run(dbus_queries(lab))
        direct = json.loads(
            run_in_lab(lab, sys.executable, "-c", DIRECT_QUERY, str(QUERIES)).stdout
        )
        time.sleep(2)
        cpu_before, rss = cpu_seconds(daemon.pid), rss_mb(daemon.pid)
        time.sleep(IDLE_SECONDS)
        idle_cpu = cpu_seconds(daemon.pid) - cpu_before
        noop, may_exist = noop_through_daemon(lab)
        repairs_big = asyncio.run(repair_latencies(lab))  # 1000 ports declared now
        time.sleep(0.5)
        before = ledger_size(lab)
        asyncio.run(keep_deleting_port(lab.ovs.db, BRIDGE, PORT, FIGHTS))
        time.sleep(2)  # the last repair and its record
        fought = repair_codes(lab, before)
        busctl_apply(lab, json.dumps(many_bridges()))
        time.sleep(5)  # vswitchd's new devices are events the daemon checks; let them pass
        rss_many = rss_mb(daemon.pid)
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        log.close()
        notify.close()
        for path in workdir.iterdir():
            path.unlink()
        workdir.rmdir()
        removal = ["ovs-vsctl", "--timeout=120"]
        for bridge in (BRIDGE, NOOP_BRIDGE, *(f"bm{i}" for i in range(MANY_BRIDGES))):
            removal += ["--", "--if-exists", "del-br", bridge]
        run_in_lab(lab, *removal, check=False)
        lab.down()
    hand = statistics.median(by_hand)
    median, worst = statistics.median(repairs), p95(repairs)
    query, baseline = statistics.median(via_dbus), statistics.median(direct)
    big_median = statistics.median(repairs_big)
    undone = [code for code in fought if code not in (0, 3)]
    return [
        row(
            f"drift repair, median of {REPAIRS} (del-port to port back)",
            median,
            hand,
            "< 100 ms",
            median < 0.1,
        ),
        row(f"drift repair, p95 of {REPAIRS}", worst, hand),
        row(
            "query from the daemon (D-Bus QueryState) vs direct",
            query,
            baseline,
            "< 20 ms",
            query < 0.02,
        ),
        row(f"idle RSS: {rss:.1f} MB", None, None, "< 80 MB", rss < 80),
        row(
            f"idle CPU over {IDLE_SECONDS:.0f} s",
            idle_cpu,
            None,
            "< 1 s per minute",
            idle_cpu < IDLE_SECONDS / 60,
        ),
        row(
            f"no-op re-apply N={NOOP_PORTS} through the daemon (busctl ApplyState) "
            "vs batched --may-exist",
            noop,
            may_exist,
            "within 3x (#4's goal)",
            noop / may_exist <= 3,
        ),
        row(
            f"drift repair with {NOOP_PORTS} ports declared, median of {REPAIRS}",
            big_median,
            hand,
            "< 30 ms",
            big_median < 0.03,
        ),
        row(f"drift repair with {NOOP_PORTS} ports declared, p95", p95(repairs_big), hand),
        row(
            f"recurring drift ({FIGHTS} deletions during repairs, {NOOP_PORTS} ports declared):"
            f" {len(fought)} repairs, {fought.count(3)} re-planned, {len(undone)} rolled back",
            None,
            None,
            "none rolled back",
            not undone,
        ),
        row(
            f"idle RSS with {MANY_BRIDGES} bridges declared: {rss_many:.1f} MB",
            None,
            None,
            "< 150 MB",
            rss_many < 150,
        ),
    ]


if __name__ == "__main__":
    for line in run():
        print(line)
