"""Run every benchmark and write the figures into docs/benchmarks.md.

Benchmarks are not part of `make test`: timings there would be flaky. `make bench` runs this.
"""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import cli_startup

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"


def fmt(value: object, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value * 1000:.1f} ms" if unit == "s" else f"{value:.2f}x"
    return str(value)


def main() -> None:
    rows = cli_startup.run()
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (benchmarks/run.py): medians of repeated runs on the project's "
        f"machine kind (2 cores, {platform.machine()}, Python {platform.python_version()}), "
        f"{time.strftime('%Y-%m-%d')}.",
        "Ratio = op-dbus time / baseline time (below 1: op-dbus is faster).",
        "",
        "## CLI start-up (goal: `op-dbus --help` under 300 ms)",
        "",
        "| case | op-dbus | baseline | ratio |",
        "|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['case']} | {fmt(row['seconds'], 's')} | {fmt(row['baseline'], 's')} "
            f"| {fmt(row['ratio'])} |"
        )
    DOC.write_text("\n".join(lines) + "\n")
    print(DOC.read_text())


if __name__ == "__main__":
    main()
