"""Ledger figures against issue 6's goals, each with the plain-SQLite floor as baseline.

Goals: over 20,000 entries/s appended (batches of 100, each signed like an apply), a full
verify of 100,000 entries under 2 s, one proof at 1,000,000 entries under 10 ms.
Baselines: the same rows inserted with no hashing or signing; a bare scan of the entries;
a single-row lookup. Ratio = ledger time / baseline time.
"""

from __future__ import annotations

import random
import sqlite3
import statistics
import tempfile
from pathlib import Path

from _common import timed

from op_dbus.ledger.store import Ledger

APPEND_TOTAL, BATCH = 100_000, 100
PROOF_SIZE, BUILD_BATCH, PROOFS = 1_000_000, 20_000, 200


def entry(n: int) -> dict[str, object]:
    """About the size of an action entry written by record_apply."""
    return {
        "type": "action",
        "apply_id": f"{n // BATCH:032x}",
        "time": "2026-11-26T12:00:00.000000Z",
        "phase": "apply",
        "plugin": "net",
        "kind": "modify",
        "resource": f"ovsbr{n % 7}/port{n}",
        "before_digest": f"{n:064x}",
        "after_digest": f"{n + 1:064x}",
        "result": "applied",
        "error": None,
    }


def plain_inserts(path: Path) -> float:
    import json

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE entries (idx INTEGER PRIMARY KEY, data TEXT NOT NULL)")

    def work() -> None:
        for start in range(0, APPEND_TOTAL, BATCH):
            rows = [(n, json.dumps(entry(n))) for n in range(start, start + BATCH)]
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT INTO entries VALUES (?, ?)", rows)
            conn.execute("COMMIT")

    seconds = timed(work)
    conn.close()
    return seconds


def run() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        with Ledger.open(base / "append") as ledger:

            def append_all() -> None:
                for start in range(0, APPEND_TOTAL, BATCH):
                    ledger.append(entry(n) for n in range(start, start + BATCH))

            seconds = timed(append_all)
            floor = plain_inserts(base / "plain.db")
            rows.append(
                {
                    "case": f"append {APPEND_TOTAL:,} entries, batches of {BATCH}, signed",
                    "seconds": seconds,
                    "baseline": floor,
                    "per_second": APPEND_TOTAL / seconds,
                    "goal": "> 20,000 entries/s",
                    "met": APPEND_TOTAL / seconds > 20_000,
                }
            )
            report = None

            def verify() -> None:
                nonlocal report
                report = ledger.verify()

            seconds = timed(verify)
            assert report is not None and report.ok and report.size == APPEND_TOTAL
            conn = sqlite3.connect(base / "append" / "ledger.db")
            floor = timed(lambda: conn.execute("SELECT idx, data FROM entries").fetchall())
            conn.close()
            rows.append(
                {
                    "case": f"full verify of {APPEND_TOTAL:,} entries",
                    "seconds": seconds,
                    "baseline": floor,
                    "goal": "< 2 s",
                    "met": seconds < 2,
                }
            )
        rows += proof_rows(base / "big")
    return rows


def proof_rows(data_dir: Path) -> list[dict[str, object]]:
    rng = random.Random(6)
    with Ledger.open(data_dir) as ledger:
        for start in range(0, PROOF_SIZE, BUILD_BATCH):
            ledger.append(entry(n) for n in range(start, start + BUILD_BATCH))
        indexes = [rng.randrange(PROOF_SIZE) for _ in range(PROOFS)]
        lookup = statistics.median([timed(lambda i=i: ledger.entry(i)) for i in indexes])
        inclusion = statistics.median(
            [timed(lambda i=i: ledger.inclusion_proof(i)) for i in indexes]
        )
        consistency = statistics.median(
            [timed(lambda i=i: ledger.consistency_proof(i + 1, PROOF_SIZE)) for i in indexes]
        )
    return [
        {
            "case": f"inclusion proof at {PROOF_SIZE:,} entries",
            "seconds": inclusion,
            "baseline": lookup,
            "goal": "< 10 ms",
            "met": inclusion < 0.010,
        },
        {
            "case": f"consistency proof at {PROOF_SIZE:,} entries",
            "seconds": consistency,
            "baseline": lookup,
            "goal": "< 10 ms",
            "met": consistency < 0.010,
        },
    ]


if __name__ == "__main__":
    for row in run():
        print(row)
