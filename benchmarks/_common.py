"""What the benchmarks share: timing one call, the median of repeated calls, the lab to run in,
op-dbus compiled as installed."""

from __future__ import annotations

import compileall
import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import op_dbus
from op_dbus.lab import Lab


def compile_op_dbus() -> None:
    """Write op-dbus's bytecode (`__pycache__`), as installing a package does: an editable
    install run with PYTHONDONTWRITEBYTECODE (set here) otherwise compiles every module at
    every start, about 0.1 s that no installed op-dbus spends."""
    compileall.compile_dir(Path(op_dbus.__file__).parent, quiet=1)


def timed(work: Callable[[], object]) -> float:
    """Wall-clock seconds of one call of `work`."""
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def median(
    work: Callable[[], object],
    runs: int,
    *,
    before: Callable[[], object] | None = None,
    warm_up: bool = False,
) -> float:
    """Median seconds of `runs` calls of `work`; `before` runs untimed ahead of each call,
    and `warm_up` makes one untimed call first (caches, imports, connections)."""
    if warm_up:
        work()
    samples = []
    for _ in range(runs):
        if before is not None:
            before()
        samples.append(timed(work))
    return statistics.median(samples)


def ratio(row: dict[str, object]) -> float | None:
    """seconds / baseline of a result row, None unless both are there."""
    seconds, baseline = row.get("seconds"), row.get("baseline")
    if isinstance(seconds, int | float) and isinstance(baseline, int | float) and baseline:
        return seconds / baseline
    return None


@contextmanager
def bench_lab(name: str) -> Iterator[Lab]:
    """The lab `OPDBUS_BENCH_LAB` names, else lab `name`, up for the benchmark.

    Whatever is missing is brought up; the lab is taken down afterwards only if it was not up
    before, so a lab someone is using is never torn down by a benchmark.
    """
    lab = Lab(os.environ.get("OPDBUS_BENCH_LAB") or name)
    was_up = lab.is_up()
    lab.up()
    try:
        yield lab
    finally:
        if not was_up:
            lab.down()
