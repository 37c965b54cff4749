"""How long `op-dbus --help` takes, against the help of the tools a user would otherwise run.

The goal (issue 2) is under 0.3 s: the CLI imports its heavy modules lazily.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

OPDBUS = str(Path(sys.executable).with_name("op-dbus"))
RUNS = 15


def median_seconds(argv: list[str], runs: int = RUNS) -> float:
    """Median wall time of `argv` over `runs` runs (after one warm-up run)."""
    subprocess.run(argv, capture_output=True, check=False)
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=False)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def run() -> list[dict[str, object]]:
    ours = median_seconds([OPDBUS, "--help"])
    rows: list[dict[str, object]] = [
        {"case": "op-dbus --help", "seconds": ours, "baseline": None, "ratio": None}
    ]
    for tool in ("ovs-vsctl", "busctl", "lxc-info"):
        if shutil.which(tool):
            theirs = median_seconds([tool, "--help"])
            rows.append(
                {
                    "case": f"op-dbus --help vs {tool} --help",
                    "seconds": ours,
                    "baseline": theirs,
                    "ratio": ours / theirs,
                }
            )
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
