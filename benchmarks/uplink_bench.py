"""The seed's uplink move: how long an operator's TCP session stalls while eth0's address and
default route go into ovsbr0.

The lab's eth0 starts as a real host's (192.168.1.10/24, default route via 192.168.1.1); the
lab's canary (a TCP session from the upstream netns, one byte every 25 ms) measures the longest
time between two echoes during the change. op-dbus applies the seed's net section (ovsbr0 with
eth0 and the address, and mesh); the baseline is the same change as one shell script of the
stock commands in the order an admin types them. Median of RUNS each, alternating.
`python benchmarks/uplink_bench.py` runs alone.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import bench_lab

from op_dbus.lab import Lab, run_in_lab

RUNS = 10
SEED = Path(__file__).resolve().parent.parent / "examples" / "full-mode.json"
SCRIPT = """set -e
ovs-vsctl --timeout=10 add-br ovsbr0 -- set Bridge ovsbr0 datapath_type=netdev \\
  -- add-port ovsbr0 eth0 -- add-br mesh -- set Bridge mesh datapath_type=netdev
ip addr flush dev eth0
ip addr add 192.168.1.10/24 dev ovsbr0
ip link set ovsbr0 up
ip route add default via 192.168.1.1 dev ovsbr0
ip addr add 10.0.0.1/24 dev mesh
ip link set mesh up
"""


def reset(lab: Lab) -> None:
    """No bridges, eth0 as the host's uplink again."""
    for bridge in run_in_lab(lab, "ovs-vsctl", "--timeout=10", "list-br").stdout.split():
        run_in_lab(lab, "ovs-vsctl", "--timeout=10", "del-br", bridge)
    run_in_lab(lab, "ip", "route", "flush", "exact", "0.0.0.0/0", check=False)
    lab.host_uplink()


def stall(lab: Lab, argv: list[str]) -> tuple[float, str]:
    """The canary's longest stall (s) while `argv` runs in the lab, and any reset it saw."""
    reset(lab)
    with lab.canary() as seen:
        time.sleep(0.2)
        run_in_lab(lab, *argv)
        time.sleep(1.0)  # a stall that starts at the end of the change counts too
    return seen.longest_stall, seen.reset


def run() -> list[dict[str, object]]:
    with bench_lab("opdbus-bench-uplink") as lab, tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state.json"
        net = json.loads(SEED.read_text())["net"]
        state.write_text(json.dumps({"version": 1, "plugins": {"net": net}}))
        script = Path(tmp) / "by-hand.sh"
        script.write_text(SCRIPT)
        ours, theirs, resets = [], [], []
        try:
            for _ in range(RUNS):
                seconds, why = stall(lab, [sys.executable, "-m", "op_dbus", "apply", str(state)])
                ours.append(seconds)
                resets += [f"op-dbus: {why}"] if why else []
                seconds, why = stall(lab, ["sh", str(script)])
                theirs.append(seconds)
                resets += [f"script: {why}"] if why else []
        finally:
            reset(lab)
    mine, script_s = statistics.median(ours), statistics.median(theirs)
    reset_free = not [r for r in resets if r.startswith("op-dbus")]
    return [
        {
            "case": f"longest TCP stall moving eth0 into ovsbr0 (seed), median of {RUNS}"
            f" vs ovs-vsctl + ip script; resets: {len(resets)} ({'; '.join(resets) or 'none'})",
            "seconds": mine,
            "baseline": script_s,
            "goal": "< 1 s, no reset, no worse than the script",
            "met": mine < 1.0 and reset_free and mine <= script_s,
        }
    ]


if __name__ == "__main__":
    for row in run():
        print(json.dumps(row))
