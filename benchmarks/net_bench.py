"""N bridges, each with one internal port and one IPv4 address: op-dbus against the stock tools.

A private ovsdb-server and ovs-vswitchd (netdev datapath, in a network namespace of its own,
which every command here runs in) at N = 100, 300, 1000, all whole processes:
- apply: `op-dbus apply` (including its verification) on an emptied database, against one
  batched `ovs-vsctl` call (which waits for vswitchd, as it does by default) followed by one
  `ip -batch` setting the bridges up and adding their addresses;
- no-op re-apply: `op-dbus apply` again, against the batched `ovs-vsctl --may-exist add-br ...
  -- --may-exist add-port ...` followed by the `ip -batch` replay (`link set up`, `addr replace`);
- diff: `op-dbus diff` of the applied file, against a read with `ovs-vsctl show`, `ip -j addr`
  and `ip -j route show default`;
- growth: time(1000) / time(100) of each op-dbus case (goal: at most 12 for 10x the work).
Each row's figures come from the same run. `python benchmarks/net_bench.py [N ...]` runs alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import median, ratio

from op_dbus.lab.private_ovs import PrivateOvs, private_ovs

OPDBUS = str(Path(sys.executable).with_name("op-dbus"))
SIZES = (100, 300, 1000)
RUNS = 3
GOALS = {
    "apply": ("within 1.5x", 1.5),
    "no-op apply": ("within 3x", 3.0),
    "diff": ("within 3x", 3.0),
}
GROWTH_GOAL = ("at most 12", 12.0)


def _bridges(n: int) -> list[tuple[str, str, str]]:
    """(bridge, its internal port, its address) for each of `n` bridges."""
    return [(f"nb{i}", f"np{i}", f"10.{i // 250}.{i % 250}.1/24") for i in range(n)]


def _state(n: int, work: Path) -> str:
    interfaces: list[dict[str, object]] = []
    for bridge, port, address in _bridges(n):
        ip, prefix = address.split("/")
        ipv4 = {"enabled": True, "address": [{"ip": ip, "prefix": int(prefix)}]}
        interfaces.append(
            {"name": bridge, "type": "ovs-bridge", "datapath": "netdev", "ipv4": ipv4}
        )
        interfaces.append({"name": port, "type": "ovs-internal", "bridge": bridge})
    path = work / f"state-{n}.json"
    path.write_text(json.dumps({"version": 1, "plugins": {"net": {"interfaces": interfaces}}}))
    return str(path)


def _ip_batch(n: int, work: Path, add: str) -> str:
    lines = [f"link set {b} up\naddr {add} {a} dev {b}\n" for b, _, a in _bridges(n)]
    path = work / f"ip-{add}-{n}.batch"
    path.write_text("".join(lines))
    return str(path)


class Bench:
    """Commands run in vswitchd's network namespace, where its devices are."""

    def __init__(self, ovs: PrivateOvs, work: Path) -> None:
        assert ovs.vswitchd is not None
        self.ovs = ovs
        self.work = work
        self.netns = ["nsenter", f"--net=/proc/{ovs.vswitchd.pid}/ns/net", "--"]
        self.env = {**os.environ, "OPDBUS_OVSDB": ovs.target, "OPDBUS_DATA_DIR": str(work / "data")}

    def run(self, *argv: str, codes: tuple[int, ...] = (0,)) -> None:
        """One whole process in the namespace, which must end with one of `codes`."""
        done = subprocess.run(
            [*self.netns, *argv], capture_output=True, text=True, env=self.env, check=False
        )
        if done.returncode not in codes:
            raise RuntimeError(f"{' '.join(argv[:2])} failed ({done.returncode}): {done.stdout}"
                               f"{done.stderr}")  # fmt: skip

    def vsctl(self, *args: str) -> None:
        self.run(*self.ovs.vsctl_argv(*args))

    def empty(self, n: int) -> None:
        args: list[str] = []
        for bridge, _, _ in _bridges(n):
            args += ["--", "--if-exists", "del-br", bridge]
        self.vsctl(*args[1:])

    def batched_apply(self, n: int) -> None:
        args: list[str] = []
        for bridge, port, _ in _bridges(n):
            args += ["--", "add-br", bridge, "--", "set", "Bridge", bridge, "datapath_type=netdev"]
            args += [
                "--",
                "add-port",
                bridge,
                port,
                "--",
                "set",
                "Interface",
                port,
                "type=internal",
            ]
        self.vsctl(*args[1:])
        self.run("ip", "-batch", _ip_batch(n, self.work, "add"))

    def batched_noop(self, n: int) -> None:
        args: list[str] = []
        for bridge, port, _ in _bridges(n):
            args += [
                "--",
                "--may-exist",
                "add-br",
                bridge,
                "--",
                "--may-exist",
                "add-port",
                bridge,
                port,
            ]
        self.vsctl(*args[1:])
        self.run("ip", "-batch", _ip_batch(n, self.work, "replace"))

    def read(self) -> None:
        self.run("ovs-vsctl", f"--db={self.ovs.target}", "show")
        self.run("ip", "-j", "addr")
        self.run("ip", "-j", "route", "show", "default")


def _row(
    case: str, ours: float, theirs: float, goal: tuple[str, float] | None
) -> dict[str, object]:
    row: dict[str, object] = {"case": case, "seconds": ours, "baseline": theirs}
    if goal is not None:
        row["goal"], row["met"] = goal[0], ours / theirs <= goal[1]
    return row


def _measure(bench: Bench, n: int) -> dict[str, tuple[float, float]]:
    """(op-dbus, baseline) seconds of each case at size `n`."""
    state = _state(n, bench.work)
    apply = median(lambda: bench.run(OPDBUS, "apply", state), RUNS, before=lambda: bench.empty(n))
    batched = median(lambda: bench.batched_apply(n), RUNS, before=lambda: bench.empty(n))
    bench.empty(n)
    bench.run(OPDBUS, "apply", state)
    noop = median(lambda: bench.run(OPDBUS, "apply", state), RUNS)
    replay = median(lambda: bench.batched_noop(n), RUNS)
    diff = median(lambda: bench.run(OPDBUS, "diff", state), RUNS)
    read = median(bench.read, RUNS)
    bench.empty(n)
    return {"apply": (apply, batched), "no-op apply": (noop, replay), "diff": (diff, read)}


BASELINES = {
    "apply": "batched ovs-vsctl + ip -batch",
    "no-op apply": "batched --may-exist + ip -batch replay",
    "diff": "ovs-vsctl show + ip -j",
}


def run(sizes: tuple[int, ...] = SIZES) -> list[dict[str, object]]:
    """Rows of case, seconds (op-dbus), baseline; all from this one run."""
    rows: list[dict[str, object]] = []
    figures: dict[int, dict[str, tuple[float, float]]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="opdbus-bench-net-") as name,
        private_ovs(vswitchd=True) as ovs,
    ):
        bench = Bench(ovs, Path(name))
        for n in sizes:
            figures[n] = _measure(bench, n)
            for case, (ours, theirs) in figures[n].items():
                goal = GOALS[case] if n == max(SIZES) else None
                label = f"{case} N={n} bridges (port, address each) vs {BASELINES[case]}"
                rows.append(_row(label, ours, theirs, goal))
    small, large = min(SIZES), max(SIZES)
    if small in figures and large in figures:
        for case in GOALS:
            label = f"{case}: op-dbus time(N={large}) vs time(N={small})"
            rows.append(_row(label, figures[large][case][0], figures[small][case][0], GROWTH_GOAL))
    return rows


if __name__ == "__main__":
    chosen = tuple(int(a) for a in sys.argv[1:]) or SIZES
    for row in run(chosen):
        print(f"{row['case']:90} {row['seconds']:8.3f} s {row['baseline']:8.3f} s "
              f"{ratio(row):6.2f}x {row.get('met', '')}")  # fmt: skip
