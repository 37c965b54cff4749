"""Fixtures of the fleet tests: a 3-member etcd cluster and lab hosts each running the agent.

The etcd members live on a management network of the tests' own (op_dbus.lab.etcd): a
namespace with a bridge, and a veth from each lab host's netns into it. The agents are
`op-dbus run --fleet` inside their lab host's netns; the admin's `op-dbus fleet` and
`etcdctl` run in the management namespace. Everything is stopped by PID.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from op_dbus.lab import Lab
from op_dbus.lab.etcd import EtcdCluster, etcd_cluster
from op_dbus.lab.private_ovs import stop_child

HOSTS = ("h1", "h2", "h3")


@dataclass
class FleetHost:
    name: str
    lab: Lab
    index: int
    endpoints: str
    log: Path
    agent: subprocess.Popen[bytes] | None = None
    extra: list[str] = field(default_factory=list)

    def start_agent(self) -> None:
        argv = [sys.executable, "-m", "op_dbus", "run", "--fleet", "--host-name", self.name,
                "--etcd", self.endpoints, "-v", *self.extra]  # fmt: skip
        with self.log.open("ab") as log:
            self.agent = subprocess.Popen(self.lab.exec_argv(argv), stdout=log, stderr=log)

    def stop_agent(self, sig: int = signal.SIGTERM) -> None:
        if self.agent is not None:
            stop_child(self.agent, sig)
            self.agent = None

    def vsctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.lab.exec_argv(["ovs-vsctl", "--timeout=10", *args]),
            capture_output=True, text=True, check=False,
        )  # fmt: skip

    def bridges(self) -> set[str]:
        return set(self.vsctl("list-br").stdout.split())


class Fleet:
    def __init__(self, cluster: EtcdCluster, hosts: dict[str, FleetHost], work: Path) -> None:
        self.cluster = cluster
        self.hosts = hosts
        self.work = work

    def cli(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "op_dbus", "fleet", "--etcd", self.cluster.endpoints, *args]
        return subprocess.run(
            self.cluster.exec_argv(*argv), capture_output=True, text=True, check=check,
            timeout=300,
        )  # fmt: skip

    def cli_popen(self, *args: str) -> subprocess.Popen[str]:
        argv = [sys.executable, "-m", "op_dbus", "fleet", "--etcd", self.cluster.endpoints, *args]
        return subprocess.Popen(
            self.cluster.exec_argv(*argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True,
        )  # fmt: skip

    def write(self, name: str, doc: dict[str, Any]) -> str:
        path = self.work / name
        path.write_text(json.dumps(doc))
        return str(path)

    def status(self) -> dict[str, dict[str, Any]]:
        done = self.cli("status", "--json", check=True)
        return {h["host"]: h for h in json.loads(done.stdout)["hosts"]}

    def wait(self, ok: Callable[[dict[str, dict[str, Any]]], bool], what: str, timeout=90.0):
        """Until `ok(status)` holds (a deadline for a hang, not a timing assertion)."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status()
            if ok(status):
                return status
            if time.monotonic() > deadline:
                logs = {n: h.log.read_text()[-3000:] for n, h in self.hosts.items()}
                raise AssertionError(f"{what}: not within {timeout:g} s: {status}\n{logs}")
            time.sleep(0.3)

    def etcd_json(self, key: str) -> Any:
        done = self.cluster.etcdctl("get", key, "--print-value-only")
        return json.loads(done.stdout) if done.stdout.strip() else None

    def revision(self) -> int:
        done = self.cluster.etcdctl("endpoint", "status", "-w", "json")
        return max(m["Status"]["header"]["revision"] for m in json.loads(done.stdout))


def applied(*names: str) -> Callable[[dict[str, dict[str, Any]]], bool]:
    return lambda status: all(status.get(n, {}).get("state") == "applied" for n in names)


def remove_orphans() -> None:
    """Lab hosts and etcd namespaces of fleet test runs whose pytest process is gone."""
    from op_dbus.lab import netns
    from op_dbus.lab.lab import RUN_ROOT

    listing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    names = {line.split()[0] for line in listing.stdout.splitlines() if line}
    names |= {p.name for p in RUN_ROOT.glob("fh*")}
    for name in sorted(names):
        match = re.fullmatch(r"(fh|fe)(\d+)-(\d+|m)(-up)?", name)
        if match is None or Path(f"/proc/{match[2]}").exists():
            continue
        if match[1] == "fh":
            Lab(name.removesuffix("-up")).down()
        else:
            netns.delete(name)


@pytest.fixture(scope="module", name="fleet")
def fleet_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    if os.geteuid() != 0:
        pytest.skip("fleet lab tests need root")
    remove_orphans()
    pid = os.getpid()
    work = tmp_path_factory.mktemp("fleet")
    hosts: dict[str, FleetHost] = {}
    with etcd_cluster(f"fe{pid}") as cluster:
        try:
            for index, name in enumerate(HOSTS, 1):
                lab = Lab(f"fh{pid}-{index}")
                hosts[name] = FleetHost(name, lab, index, cluster.endpoints, work / f"{name}.log")
                lab.up()
                cluster.attach(lab.name, index)
            for host in hosts.values():
                host.start_agent()
            yield Fleet(cluster, hosts, work)
        finally:
            for host in hosts.values():
                host.stop_agent()
            left = [thing for host in hosts.values() for thing in host.lab.down()]
            assert not left, f"lab hosts left behind: {left}"
