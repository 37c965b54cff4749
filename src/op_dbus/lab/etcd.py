"""A throw-away etcd cluster on a management network of its own, for fleet tests and benches.

The lab hosts' network namespaces do not share the machine's loopback, so the members run in
a management namespace (`<name>-m`) on a Linux bridge holding their addresses (10.77.0.1,
.2, ...); `attach()` gives any other namespace a veth into that bridge. Members are the real
`etcd` binaries, our children, stopped by PID; nothing lands in the machine's own network.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from op_dbus.lab import netns
from op_dbus.lab.errors import LabError
from op_dbus.lab.private_ovs import stop_child

SUBNET = "10.77.0"
BRIDGE = "fleetbr"


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise LabError(f"ip {' '.join(args)}: {done.stderr.strip()}")


@dataclass
class EtcdCluster:
    name: str
    size: int = 3
    dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="opdbus-etcd-")))
    members: dict[int, subprocess.Popen[bytes]] = field(default_factory=dict)
    attached: list[tuple[str, str]] = field(default_factory=list)
    """(netns, device in the management namespace) of each attachment."""
    tls: Path | None = None
    """A directory with server.crt, server.key and ca.crt: clients speak TLS."""
    etcdctl_auth: tuple[str, ...] = ()
    """Extra etcdctl options (e.g. `--user=root:PW` once auth is on)."""

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def netns(self) -> str:
        return f"{self.name}-m"

    def address(self, member: int) -> str:
        return f"{SUBNET}.{member}"

    @property
    def endpoints(self) -> str:
        return ",".join(self.endpoint(i) for i in range(1, self.size + 1))

    def endpoint(self, member: int) -> str:
        return f"{self.scheme}://{self.address(member)}:2379"

    def exec_argv(self, *argv: str) -> list[str]:
        """`argv` inside the management namespace (etcdctl, `op-dbus fleet ...`)."""
        return ["ip", "netns", "exec", self.netns, *argv]

    def etcdctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        tls = [f"--cacert={self.tls / 'ca.crt'}"] if self.tls else []
        argv = self.exec_argv(
            "etcdctl", f"--endpoints={self.endpoints}", *tls, *self.etcdctl_auth, *args
        )
        env = {"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"}
        return subprocess.run(argv, capture_output=True, text=True, check=check, env=env)

    # -- life ------------------------------------------------------------------------------
    def start(self) -> None:
        netns.delete(self.netns)
        _ip("netns", "add", self.netns)
        _ip("-n", self.netns, "link", "set", "lo", "up")
        _ip("-n", self.netns, "link", "add", BRIDGE, "type", "bridge")
        for i in range(1, self.size + 1):
            _ip("-n", self.netns, "addr", "add", f"{self.address(i)}/24", "dev", BRIDGE)
        _ip("-n", self.netns, "link", "set", BRIDGE, "up")
        for i in range(1, self.size + 1):
            self.start_member(i)
        self.wait_healthy()

    def _argv(self, i: int) -> list[str]:
        peers = ",".join(f"m{j}=http://{self.address(j)}:2380" for j in range(1, self.size + 1))
        data = self.dir / f"m{i}"
        state = "existing" if data.exists() else "new"
        tls = []
        if self.tls:
            tls = [
                f"--cert-file={self.tls / 'server.crt'}",
                f"--key-file={self.tls / 'server.key'}",
            ]
        return self.exec_argv(
            "etcd", f"--name=m{i}", f"--data-dir={data}", *tls,
            f"--listen-client-urls={self.endpoint(i)}",
            f"--advertise-client-urls={self.endpoint(i)}",
            f"--listen-peer-urls=http://{self.address(i)}:2380",
            f"--initial-advertise-peer-urls=http://{self.address(i)}:2380",
            f"--initial-cluster={peers}", f"--initial-cluster-state={state}",
            f"--initial-cluster-token={self.name}", "--log-level=warn", "--logger=zap",
            "--heartbeat-interval=100", "--election-timeout=1000",
        )  # fmt: skip

    def start_member(self, i: int) -> None:
        log = (self.dir / f"m{i}.log").open("ab")
        self.members[i] = subprocess.Popen(self._argv(i), stdout=log, stderr=log)

    def kill_member(self, i: int) -> None:
        """SIGKILL one member (a crash), by its PID."""
        child = self.members.pop(i)
        stop_child(child, signal.SIGKILL)

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        alive = [self.endpoint(i) for i in sorted(self.members)]
        while True:
            done = self.etcdctl(f"--endpoints={','.join(alive)}", "endpoint", "health", check=False)
            if done.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise LabError(f"etcd cluster not healthy within {timeout:g} s: {done.stderr}")
            time.sleep(0.2)

    def attach(self, other: str, index: int) -> str:
        """A veth from netns `other` into the management bridge; its address there."""
        device = f"fm{index}"
        address = f"{SUBNET}.{100 + index}"
        _ip("-n", self.netns, "link", "add", device, "type", "veth", "peer", "name", "mgmt0",
            "netns", other)  # fmt: skip
        _ip("-n", self.netns, "link", "set", device, "master", BRIDGE, "up")
        _ip("-n", other, "addr", "add", f"{address}/24", "dev", "mgmt0")
        _ip("-n", other, "link", "set", "mgmt0", "up")
        self.attached.append((other, device))
        return address

    def cut(self, index: int, up: bool = False) -> None:
        """Take attachment `index`'s link down (etcd unreachable for it) or up again."""
        _ip("-n", self.netns, "link", "set", f"fm{index}", "up" if up else "down")

    def stop(self) -> None:
        for i in list(self.members):
            stop_child(self.members.pop(i))
        for _other, device in self.attached:
            with contextlib.suppress(LabError):
                _ip("-n", self.netns, "link", "del", device)
        self.attached.clear()
        netns.delete(self.netns)
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def etcd_cluster(name: str, size: int = 3, tls: Path | None = None) -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(name, size, tls=tls)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
