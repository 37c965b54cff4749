"""How long the CLI takes to start: `op-dbus --help` against the help of the tools a user would
otherwise run, and a no-op `op-dbus apply` of the seed's file (examples/full-mode.json) in a
lab where it is applied already (its containers renamed `st-*`: container cgroup names are
host-wide, and tests use the seed's own names).

Goals (issue 20): `--help` under 100 ms, the no-op apply under 300 ms. Where the time goes:
`python -X importtime -m op_dbus apply FILE`. `OPDBUS_BENCH_LAB` names the lab to use, else
"opdbus-bench-cli" (taken down after only if this run brought it up).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import bench_lab, median

from op_dbus.lab import Lab, run_in_lab

OPDBUS = str(Path(sys.executable).with_name("op-dbus"))
SEED = Path(__file__).resolve().parent.parent / "examples" / "full-mode.json"
RUNS = 15
APPLY_RUNS = 7


def median_seconds(argv: list[str], runs: int = RUNS) -> float:
    """Median wall time of `argv` over `runs` runs (after one warm-up run)."""
    return median(
        lambda: subprocess.run(argv, capture_output=True, check=False), runs, warm_up=True
    )


def renamed_seed() -> dict[str, object]:
    seed = json.loads(SEED.read_text())
    for container in seed["lxc"]["containers"]:
        container["name"] = f"st-{container['name']}"
    return seed


def noop_apply(lab: Lab, state: Path) -> float:
    """Median whole-process time of a no-op `op-dbus apply` of `state` (applied first)."""
    argv = lab.exec_argv([OPDBUS, "apply", str(state)])
    first = subprocess.run(argv, capture_output=True, text=True, check=False)
    if first.returncode != 0:
        raise RuntimeError(f"applying the seed failed: {first.stdout}{first.stderr}")
    again = subprocess.run(argv, capture_output=True, text=True, check=False)
    if again.returncode != 0 or "nothing to do" not in again.stdout + again.stderr:
        raise RuntimeError(f"the re-apply is no no-op: {again.stdout}{again.stderr}")
    return median_seconds(argv, APPLY_RUNS)


def clean(lab: Lab, containers: list[str]) -> None:
    for name in containers:
        run_in_lab(lab, "lxc-destroy", "-P", str(lab.lxc_path), "-n", name, "-f", check=False)
    for bridge in run_in_lab(lab, "ovs-vsctl", "--timeout=10", "list-br").stdout.split():
        run_in_lab(lab, "ovs-vsctl", "--timeout=10", "del-br", bridge)


def run() -> list[dict[str, object]]:
    ours = median_seconds([OPDBUS, "--help"])
    rows: list[dict[str, object]] = [
        {
            "case": "op-dbus --help",
            "seconds": ours,
            "baseline": None,
            "goal": "< 100 ms",
            "met": ours < 0.1,
        }
    ]
    for tool in ("ovs-vsctl", "busctl", "lxc-info"):
        if shutil.which(tool):
            theirs = median_seconds([tool, "--help"])
            rows.append(
                {"case": f"op-dbus --help vs {tool} --help", "seconds": ours, "baseline": theirs}
            )
    seed = renamed_seed()
    names = [str(c["name"]) for c in seed["lxc"]["containers"]]  # type: ignore[index]
    with (
        bench_lab("opdbus-bench-cli") as lab,
        tempfile.TemporaryDirectory(prefix="opdbus-cli-bench-") as tmp,
    ):
        state = Path(tmp) / "full-mode.json"
        state.write_text(json.dumps(seed))
        try:
            noop = noop_apply(lab, state)
        finally:
            clean(lab, names)
    rows.append(
        {
            "case": "no-op `op-dbus apply` of the seed's file (whole process)",
            "seconds": noop,
            "baseline": None,
            "goal": "< 300 ms",
            "met": noop < 0.3,
        }
    )
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
