"""Fleet: the time from one `fleet put` of a group's state to N agents reporting it applied.

N = 1, 5, 20 agents (`op-dbus run --fleet`, each in a network namespace of its own with a
private ovsdb-server and a veth into the etcd cluster's management network), against a
3-member etcd cluster (op_dbus.lab.etcd). Each row is the median of RUNS puts, each a new
bridge for the whole group: put, every agent's watch event, plan, apply as a try, probes,
confirm, status published, seen by the measuring watch. Baseline: what an admin otherwise
does, `op-dbus apply` of the same file on each host one after the other (N times one apply,
measured on one of the hosts). Also measured: the sizes of the keys an agent writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from op_dbus.lab.etcd import EtcdCluster
from op_dbus.lab.private_ovs import private_ovs, stop_child

SIZES = (1, 5, 20)
RUNS = int(os.environ.get("BENCH_FLEET_RUNS", "3"))
GROUP = "bench"


def doc(run: int) -> dict[str, Any]:
    bridge = {"name": f"bfl{run}", "type": "ovs-bridge", "ports": []}
    return {"version": 1, "plugins": {"net": {"interfaces": [bridge]}}}


async def _measure(endpoints: str, hosts: list[str], path: str) -> dict[str, Any]:
    """Inside the management namespace: one put, then a watch until every host applied."""
    from op_dbus.fleet import keys
    from op_dbus.fleet.admin import put_document
    from op_dbus.fleet.rollout import wait_for
    from op_dbus.fleet.store import EtcdOptions, connected
    from op_dbus.model import load_state

    sections = load_state(path).state.sections()
    async with connected(EtcdOptions.parse(endpoints)) as client:
        start = time.perf_counter()
        reply = await put_document(client, keys.group_state(GROUP), sections, None)
        conditions = await wait_for(client, hosts, reply["revision"], 300)
        seconds = time.perf_counter() - start
        status = await client.range_at(keys.STATUS)
        sizes = [len(kv.value) for kv in status.kvs]
    failed = {h: c for h, c in conditions.items() if c["condition"] != "Available"}
    return {"seconds": seconds, "failed": failed, "status_bytes": max(sizes)}


class Agents:
    """N agents, each with its netns, ovsdb-server and data dir; stopped by PID."""

    def __init__(self, cluster: EtcdCluster, count: int, work: Path) -> None:
        self.cluster, self.count, self.work = cluster, count, work
        self.stack = contextlib.ExitStack()
        self.children: list[subprocess.Popen[bytes]] = []
        self.netns: list[str] = []

    def __enter__(self) -> Agents:
        for i in range(1, self.count + 1):
            ovs = self.stack.enter_context(private_ovs())
            ns = f"{self.cluster.name}-a{i}"
            subprocess.run(["ip", "netns", "add", ns], check=True)
            subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
            self.netns.append(ns)
            self.cluster.attach(ns, i)
            data = self.work / f"a{i}"
            data.mkdir()
            env = {
                "OPDBUS_OVSDB": ovs.target,
                "OPDBUS_DATA_DIR": str(data),
                "OPDBUS_SYSTEM_BUS": f"unix:path={data}/no-bus",
                "PATH": os.environ["PATH"],
            }
            argv = ["ip", "netns", "exec", ns, "env", *(f"{k}={v}" for k, v in env.items()),
                    sys.executable, "-m", "op_dbus", "--mode", "standalone", "run", "--fleet",
                    "--host-name", f"b{i}", "--etcd", self.cluster.endpoints]  # fmt: skip
            log = (self.work / f"a{i}.log").open("ab")
            self.children.append(subprocess.Popen(argv, stdout=log, stderr=log))
        return self

    def __exit__(self, *exc: object) -> None:
        for child in self.children:
            stop_child(child)
        for ns in self.netns:
            subprocess.run(["ip", "netns", "delete", ns], check=False)
        self.cluster.attached.clear()
        self.stack.close()


def measure(cluster: EtcdCluster, hosts: list[str], path: Path) -> dict[str, Any]:
    argv = cluster.exec_argv(sys.executable, __file__, "--measure", cluster.endpoints,
                             ",".join(hosts), str(path))  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=600)
    return json.loads(done.stdout)


def wait_alive(cluster: EtcdCluster, count: int) -> None:
    deadline = time.monotonic() + 120
    while True:
        done = cluster.etcdctl("get", "--prefix", "--keys-only", "/op-dbus/v1/alive/")
        if len(done.stdout.split()) >= count:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {done.stdout.split()} alive")
        time.sleep(0.3)


def local_apply_seconds(work: Path, path: Path) -> float:
    """One `op-dbus apply` of the same file on one host (a netns and ovsdb-server of its own)."""
    with private_ovs() as ovs:
        ns = f"fbl{os.getpid()}"
        subprocess.run(["ip", "netns", "add", ns], check=True)
        try:
            env = {
                "OPDBUS_OVSDB": ovs.target,
                "OPDBUS_DATA_DIR": str(work / "local"),
                "OPDBUS_SYSTEM_BUS": "unix:path=/nonexistent",
                "PATH": os.environ["PATH"],
            }
            argv = ["ip", "netns", "exec", ns, "env", *(f"{k}={v}" for k, v in env.items()),
                    sys.executable, "-m", "op_dbus", "--mode", "standalone", "apply",
                    str(path)]  # fmt: skip
            start = time.perf_counter()
            subprocess.run(argv, check=True, capture_output=True)
            return time.perf_counter() - start
        finally:
            subprocess.run(["ip", "netns", "delete", ns], check=False)


def run() -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="opdbus-fleet-bench-") as tmp:
        work = Path(tmp)
        cluster = EtcdCluster(f"fb{os.getpid()}")
        try:
            cluster.start()
            join = [sys.executable, "-m", "op_dbus", "fleet", "--etcd", cluster.endpoints]
            for count in SIZES:
                hosts = [f"b{i}" for i in range(1, count + 1)]
                run_dir = work / f"n{count}"
                run_dir.mkdir()
                with Agents(cluster, count, run_dir):
                    wait_alive(cluster, count)
                    subprocess.run(cluster.exec_argv(*join, "join", GROUP, *hosts), check=True,
                                   capture_output=True)  # fmt: skip
                    samples, status_bytes = [], 0
                    for i in range(RUNS):
                        path = run_dir / f"doc{i}.json"
                        path.write_text(json.dumps(doc(i)))
                        result = measure(cluster, hosts, path)
                        if result["failed"]:
                            raise RuntimeError(f"hosts failed: {result['failed']}")
                        samples.append(result["seconds"])
                        status_bytes = result["status_bytes"]
                    local = local_apply_seconds(run_dir, path)
                cluster.etcdctl("del", "--prefix", "/op-dbus/v1/")
                rows.append(
                    {
                        "case": f"`fleet put` to {count} agent(s) reporting applied "
                        f"(median of {RUNS}; status key {status_bytes} B)",
                        "seconds": statistics.median(samples),
                        "baseline": local * count,
                        "goal": "< 10 s",
                        "met": statistics.median(samples) < 10,
                    }
                )
        finally:
            cluster.stop()
    return rows


if __name__ == "__main__":
    if sys.argv[1:2] == ["--measure"]:
        endpoints, hosts, path = sys.argv[2:5]
        print(json.dumps(asyncio.run(_measure(endpoints, hosts.split(","), path))))
    else:
        for row in run():
            print(row)
