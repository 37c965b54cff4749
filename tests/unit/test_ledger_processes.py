"""The ledger across processes: SIGKILL mid-append and concurrent writers."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from op_dbus.ledger.checkpoint import open_checkpoint
from op_dbus.ledger.store import Ledger

WRITER = """
import sys
from op_dbus.ledger.store import Ledger

data_dir, tag, batches, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
with Ledger.open(data_dir) as ledger:
    for number in range(batches):
        ledger.append(
            {"type": "action", "writer": tag, "batch": number, "n": i, "pad": "x" * 200}
            for i in range(batch)
        )
"""


def writer(data_dir: Path, tag: str, batches: int, batch: int) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-c", WRITER, str(data_dir), tag, str(batches), str(batch)]
    return subprocess.Popen(argv, stderr=subprocess.PIPE)


def test_sigkill_in_the_middle_of_appending_leaves_a_log_that_verifies(tmp_path: Path) -> None:
    for round_number in range(3):
        proc = writer(tmp_path, f"crash{round_number}", 100_000, 300)
        try:
            deadline = time.monotonic() + 20
            with Ledger.open(tmp_path) as ledger:
                start = ledger.size()
                while ledger.size() < start + 1500 + 700 * round_number:
                    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                    assert time.monotonic() < deadline
                    time.sleep(0.005)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        assert proc.returncode == -signal.SIGKILL
        with Ledger.open(tmp_path) as ledger:
            report = ledger.verify()
            assert report.ok, report.problems
            # Entries and their checkpoint commit together: nothing is left unsigned.
            assert report.verified_size == report.size > 0
            assert report.size % 300 == 0


def test_two_processes_appending_at_once_make_one_consistent_log(tmp_path: Path) -> None:
    Ledger.open(tmp_path).close()
    procs = [writer(tmp_path, tag, 40, 25) for tag in ("left", "right")]
    for proc in procs:
        assert proc.wait(timeout=60) == 0, proc.stderr.read() if proc.stderr else ""
    with Ledger.open(tmp_path) as ledger:
        report = ledger.verify()
        assert report.ok, report.problems
        assert report.size == 2 * 40 * 25
        values = [entry.value for entry in ledger.entries()]
        vkey = ledger.public_key()
        sizes = [open_checkpoint(note, vkey).size for note in ledger.checkpoints()]
    # Every batch landed whole and contiguous: writers never interleave inside a batch.
    for start in range(0, len(values), 25):
        chunk = values[start : start + 25]
        assert {(v["writer"], v["batch"]) for v in chunk} == {
            (chunk[0]["writer"], chunk[0]["batch"])
        }
        assert [v["n"] for v in chunk] == list(range(25))
    assert {v["writer"] for v in values} == {"left", "right"}
    assert sizes == list(range(25, 2001, 25))
