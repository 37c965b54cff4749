"""How long `op-dbus --help` takes, against the help of the tools a user would otherwise run.

The goal (issue 2) is under 0.3 s: the CLI imports its heavy modules lazily.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from _common import median

OPDBUS = str(Path(sys.executable).with_name("op-dbus"))
RUNS = 15


def median_seconds(argv: list[str], runs: int = RUNS) -> float:
    """Median wall time of `argv` over `runs` runs (after one warm-up run)."""
    return median(
        lambda: subprocess.run(argv, capture_output=True, check=False), runs, warm_up=True
    )


def run() -> list[dict[str, object]]:
    ours = median_seconds([OPDBUS, "--help"])
    rows: list[dict[str, object]] = [{"case": "op-dbus --help", "seconds": ours, "baseline": None}]
    for tool in ("ovs-vsctl", "busctl", "lxc-info"):
        if shutil.which(tool):
            theirs = median_seconds([tool, "--help"])
            rows.append(
                {"case": f"op-dbus --help vs {tool} --help", "seconds": ours, "baseline": theirs}
            )
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
