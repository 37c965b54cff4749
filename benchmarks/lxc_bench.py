"""20 busybox containers on one OVS bridge: `op-dbus apply` against a shell script doing the same.

The script does what op-dbus does, the way an administrator would by hand: per container
`lxc-create -t busybox`, replace the template's network with a fixed veth name and MAC plus
the same three hook scripts (attach to the bridge at start, detach at stop, TX offload off),
background busybox's DHCP client, `lxc-start -d`. Both run as whole processes inside a lab's
netns; the bridge exists beforehand for both. Then the no-op re-apply of the same file.
`OPDBUS_BENCH_LAB` names the lab to use, else "opdbus-bench-lxc" (taken down after only if
this run brought it up).
Goals (issue 5): apply within 1.2x of the script; no-op re-apply under 500 ms.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import bench_lab, median, timed

from op_dbus.lab import Lab, run_in_lab
from op_dbus.native.lxc_config import default_hwaddr

COUNT = 20
RUNS = 2
NOOP_RUNS = 5
BRIDGE = "mesh"

SCRIPT = r"""
set -e
P="$1"; DB="$2"; BR="$3"; shift 3
VSCTL="$(command -v ovs-vsctl) --db=$DB --timeout=10"
for spec in "$@"; do
  name=${spec%%:*}; rest=${spec#*:}; veth=${rest%%:*}; mac=${rest#*:}
  d="$P/$name"
  lxc-create -P "$P" -t busybox -n "$name" >/dev/null
  printf '#!/bin/sh\nexec %s -- --if-exists del-port "$5" -- add-port %s "$5"\n' "$VSCTL" "$BR" \
    > "$d/up"
  printf '#!/bin/sh\nexec %s -- --if-exists del-port "$5"\n' "$VSCTL" > "$d/down"
  printf '#!/bin/sh\nexec nsenter -t "$LXC_PID" -n ethtool -K eth0 tx off\n' > "$d/starthost"
  chmod +x "$d/up" "$d/down" "$d/starthost"
  sed -i '/^lxc\.net\./d' "$d/config"
  cat >> "$d/config" <<EOF
lxc.net.0.type = veth
lxc.net.0.name = eth0
lxc.net.0.flags = up
lxc.net.0.veth.pair = $veth
lxc.net.0.hwaddr = $mac
lxc.net.0.script.up = $d/up
lxc.net.0.script.down = $d/down
lxc.hook.start-host = $d/starthost
EOF
  sed -i 's|^/bin/udhcpc$|/bin/udhcpc \&|' "$d/rootfs/etc/init.d/rcS"
  lxc-start -P "$P" -n "$name" -d
done
"""


def containers() -> list[dict[str, object]]:
    return [
        {
            "id": str(200 + i),
            "name": f"bench{i}",
            "veth": f"vb{i}",
            "bridge": BRIDGE,
            "running": True,
        }
        for i in range(COUNT)
    ]


def in_lab(lab: Lab, *argv: str) -> None:
    result = subprocess.run(lab.exec_argv(list(argv)), capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{argv[:3]} failed: {result.stdout}{result.stderr}")


def destroy_all(lab: Lab) -> None:
    names = run_in_lab(lab, "lxc-ls", "-P", str(lab.lxc_path)).stdout.split()
    for name in names:
        run_in_lab(lab, "lxc-destroy", "-P", str(lab.lxc_path), "-n", name, "-f")


def measure(lab: Lab, state: Path, script: Path) -> list[dict[str, object]]:
    run_in_lab(lab, "ovs-vsctl", "--timeout=10", "--may-exist", "add-br", BRIDGE, "--",
               "set", "bridge", BRIDGE, "datapath_type=netdev")  # fmt: skip
    specs = [f"{c['name']}:{c['veth']}:{default_hwaddr(str(c['id']))}" for c in containers()]
    env = lab.env()
    baseline = ["sh", str(script), env["OPDBUS_LXC_PATH"], env["OPDBUS_OVSDB"], BRIDGE, *specs]

    def apply() -> None:
        in_lab(lab, sys.executable, "-m", "op_dbus", "apply", str(state))

    ours, theirs = [], []
    for _ in range(RUNS):
        destroy_all(lab)
        ours.append(timed(apply))
        destroy_all(lab)
        theirs.append(timed(lambda: in_lab(lab, *baseline)))
    destroy_all(lab)
    apply()
    noop_s = median(apply, NOOP_RUNS)
    destroy_all(lab)
    run_in_lab(lab, "ovs-vsctl", "--timeout=10", "--if-exists", "del-br", BRIDGE)
    apply_s, script_s = statistics.median(ours), statistics.median(theirs)
    return [
        {
            "case": f"apply {COUNT} containers on one bridge vs shell script",
            "seconds": apply_s,
            "baseline": script_s,
            "goal": "within 1.2x of the script",
            "met": apply_s <= 1.2 * script_s,
        },
        {
            "case": f"no-op re-apply of {COUNT} containers (whole process)",
            "seconds": noop_s,
            "baseline": None,
            "goal": "< 500 ms",
            "met": noop_s < 0.5,
        },
    ]


def run() -> list[dict[str, object]]:
    with (
        bench_lab("opdbus-bench-lxc") as lab,
        tempfile.TemporaryDirectory(prefix="opdbus-lxc-bench-") as tmp,
    ):
        state = Path(tmp) / "state.json"
        state.write_text(json.dumps({"lxc": {"containers": containers()}}))
        script = Path(tmp) / "baseline.sh"
        script.write_text(SCRIPT)
        return measure(lab, state, script)


if __name__ == "__main__":
    for row in run():
        print(json.dumps(row))
