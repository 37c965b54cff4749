"""The SQLite ledger: proofs against signed roots, tamper detection with the right index."""

from __future__ import annotations

import os
import sqlite3
import stat
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_ledger_merkle import mth

from op_dbus.ledger import merkle
from op_dbus.ledger.checkpoint import open_checkpoint
from op_dbus.ledger.entries import canonical
from op_dbus.ledger.store import (
    DB_NAME,
    KEY_NAME,
    PUBLIC_NAME,
    Ledger,
    LedgerError,
    LedgerMissing,
)

APPLIES = (4, 5, 3)  # entries per apply: checkpoints at sizes 4, 9 and 12


def entries(apply: int, count: int, tag: str = "a") -> list[dict]:
    return [
        {"type": "action", "apply_id": f"{tag}{apply}", "plugin": "net", "resource": f"br{i}"}
        for i in range(count)
    ]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    with Ledger.open(tmp_path) as ledger:
        for number, count in enumerate(APPLIES):
            ledger.append(entries(number, count))
    return tmp_path


def sql(data_dir: Path, *statements: tuple[str, tuple]) -> None:
    conn = sqlite3.connect(data_dir / DB_NAME)
    with conn:
        for statement, args in statements:
            conn.execute(statement, args)
    conn.close()


def verify(data_dir: Path):
    with Ledger.open(data_dir, readonly=True) as ledger:
        return ledger.verify()


def test_clean_log_verifies_and_proofs_check_against_signed_roots(data_dir: Path) -> None:
    with Ledger.open(data_dir) as ledger:
        report = ledger.verify()
        assert (report.ok, report.size, report.checkpoints, report.verified_size) == (
            True,
            12,
            3,
            12,
        )
        vkey = ledger.public_key()
        signed = [open_checkpoint(note, vkey) for note in ledger.checkpoints()]
        assert [c.size for c in signed] == [4, 9, 12]
        for index in range(12):
            proof = ledger.inclusion_proof(index, 9) if index < 9 else ledger.inclusion_proof(index)
            size = 9 if index < 9 else 12
            root = signed[1].root if size == 9 else signed[2].root
            merkle.verify_inclusion(index, size, ledger.entry(index).leaf_hash, proof, root)
        proof = ledger.consistency_proof(4, 12)
        merkle.verify_consistency(4, 12, proof, signed[0].root, signed[2].root)
        with pytest.raises(merkle.ProofError):
            merkle.verify_consistency(9, 12, proof, signed[1].root, signed[2].root)
        assert ledger.entry(5).value == {**entries(1, 5)[1], "index": 5}
        with pytest.raises(LedgerError):
            ledger.inclusion_proof(12)


def test_key_is_private_and_missing_ledger_is_not_created(tmp_path: Path, data_dir: Path) -> None:
    assert stat.S_IMODE(os.stat(data_dir / KEY_NAME).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(data_dir / PUBLIC_NAME).st_mode) == 0o644
    with Ledger.open(data_dir) as ledger:
        assert (data_dir / PUBLIC_NAME).read_text().strip() == ledger.public_key()
    with pytest.raises(LedgerMissing):
        Ledger.open(tmp_path / "nothing", readonly=True)
    assert not (tmp_path / "nothing").exists()


def test_one_byte_changed(data_dir: Path) -> None:
    sql(data_dir, ("UPDATE entries SET data = replace(data, 'br2', 'br9') WHERE idx = 6", ()))
    report = verify(data_dir)
    assert report.first_bad == 6
    assert "entry 6 does not match its stored leaf hash" in report.problems[0].message


def test_entry_deleted(data_dir: Path) -> None:
    sql(data_dir, ("DELETE FROM entries WHERE idx = 5", ()))
    report = verify(data_dir)
    assert report.first_bad == 5
    assert "entry 5 is missing" in report.problems[0].message


def test_entry_deleted_and_the_rest_renumbered(data_dir: Path) -> None:
    sql(
        data_dir,
        ("DELETE FROM entries WHERE idx = 5", ()),
        ("UPDATE entries SET idx = idx - 1 WHERE idx > 5", ()),
    )
    assert verify(data_dir).first_bad == 5


def test_two_entries_swapped(data_dir: Path) -> None:
    conn = sqlite3.connect(data_dir / DB_NAME)
    two, seven = (
        conn.execute("SELECT data FROM entries WHERE idx=?", (i,)).fetchone()[0] for i in (2, 7)
    )
    conn.close()
    sql(
        data_dir,
        ("UPDATE entries SET data = ? WHERE idx = 2", (seven,)),
        ("UPDATE entries SET data = ? WHERE idx = 7", (two,)),
    )
    report = verify(data_dir)
    assert report.first_bad == 2
    assert "entry 2 says it is entry 7" in report.problems[0].message


def forge_entries(data_dir: Path, new: list[dict]) -> None:
    """Append `new` as an attacker without the key would: entries and a rebuilt tree, no
    checkpoint (the store itself refuses to sign on top of a tampered log)."""
    conn = sqlite3.connect(data_dir / DB_NAME)
    (size,) = conn.execute("SELECT count(*) FROM entries").fetchone()
    rows = [(size + i, canonical({**e, "index": size + i}).decode()) for i, e in enumerate(new)]
    with conn:
        conn.executemany("INSERT INTO entries VALUES (?, ?)", rows)
        data = [d for (d,) in conn.execute("SELECT data FROM entries ORDER BY idx")]
        conn.execute("DELETE FROM nodes")
        for level, hashes in enumerate(
            merkle.perfect_levels([merkle.leaf_hash(d.encode()) for d in data])
        ):
            conn.executemany(
                "INSERT INTO nodes VALUES (?, ?, ?)", [(level, i, h) for i, h in enumerate(hashes)]
            )
    conn.close()


def test_truncated_and_re_extended(data_dir: Path) -> None:
    sql(
        data_dir,
        ("DELETE FROM entries WHERE idx >= 9", ()),
        ("DELETE FROM nodes WHERE ((idx + 1) << level) > 9", ()),
    )
    with Ledger.open(data_dir) as ledger, pytest.raises(LedgerError, match="not appending"):
        ledger.append(entries(2, 3, tag="forged"))
    forge_entries(data_dir, entries(2, 3, tag="forged"))
    report = verify(data_dir)
    # The stored tree is self-consistent again; the signed checkpoint of size 12 is not.
    assert report.first_bad == 9
    assert "checkpoint #3 (size 12) does not match" in report.problems[0].message
    assert report.verified_size == 9


def test_truncated_only(data_dir: Path) -> None:
    sql(data_dir, ("DELETE FROM entries WHERE idx >= 10", ()))
    report = verify(data_dir)
    assert report.first_bad == 10


def test_entry_and_stored_tree_rewritten_is_caught_by_the_checkpoint(data_dir: Path) -> None:
    """An attacker who rewrites an entry and every stored hash still cannot re-sign."""
    conn = sqlite3.connect(data_dir / DB_NAME)
    data = conn.execute("SELECT data FROM entries WHERE idx=6").fetchone()[0]
    forged = data.replace("br2", "br9")
    leaves = [
        merkle.leaf_hash((forged if i == 6 else d).encode())
        for i, d in conn.execute("SELECT idx, data FROM entries ORDER BY idx")
    ]
    with conn:
        conn.execute("UPDATE entries SET data=? WHERE idx=6", (forged,))
        conn.execute("DELETE FROM nodes")
        for level, hashes in enumerate(merkle.perfect_levels(leaves)):
            conn.executemany(
                "INSERT INTO nodes VALUES (?, ?, ?)", [(level, i, h) for i, h in enumerate(hashes)]
            )
    conn.close()
    report = verify(data_dir)
    assert report.first_bad == 4  # the apply that holds entry 6 starts at 4
    assert "something in entries 4..8 changed" in report.problems[0].message


def test_checkpoint_signature_altered(data_dir: Path) -> None:
    conn = sqlite3.connect(data_dir / DB_NAME)
    note = conn.execute("SELECT note FROM checkpoints WHERE size = 9").fetchone()[0]
    body, signature = note.rsplit(" ", 1)
    flipped = ("A" if signature[10] != "A" else "B").join((signature[:10], signature[11:]))
    conn.close()
    sql(data_dir, ("UPDATE checkpoints SET note = ? WHERE size = 9", (f"{body} {flipped}",)))
    report = verify(data_dir)
    assert report.first_bad == 4
    assert report.problems[0].message.startswith("checkpoint #2")
    assert "signature" in report.problems[0].message


def test_rewrite_with_its_checkpoints_needs_a_checkpoint_kept_elsewhere(data_dir: Path) -> None:
    with Ledger.open(data_dir) as ledger:
        saved = ledger.latest_checkpoint()
    sql(
        data_dir,
        ("DELETE FROM entries WHERE idx >= 9", ()),
        ("DELETE FROM nodes WHERE ((idx + 1) << level) > 9", ()),
        ("DELETE FROM checkpoints WHERE size > 9", ()),
    )
    with Ledger.open(data_dir) as ledger:
        ledger.append(entries(2, 3, tag="forged"))
        assert ledger.verify().ok  # the key signs whatever is on the host...
        report = ledger.verify([saved])  # ...but not what an auditor saved before
    assert report.first_bad == 9
    assert "checkpoint #4 (size 12) does not match" in report.problems[0].message


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 9), min_size=1, max_size=8))
def test_appends_in_any_batches_store_the_rfc_tree(batches: list[int]) -> None:
    with tempfile.TemporaryDirectory() as tmp, Ledger.open(tmp) as ledger:
        for number, count in enumerate(batches):
            ledger.append(entries(number, count))
        leaves = [entry.leaf_hash for entry in ledger.entries()]
        assert len(leaves) == sum(batches)
        for size in range(len(leaves) + 1):
            assert ledger.root(size) == mth(leaves[:size])
        report = ledger.verify()
        assert report.ok, report.problems


def test_an_export_taken_while_another_writer_appends_verifies(
    data_dir: Path, tmp_path: Path
) -> None:
    from op_dbus.ledger.export import export_ledger, verify_export

    path = tmp_path / "audit.jsonl"
    with Ledger.open(data_dir) as ledger, Ledger.open(data_dir) as other:
        read_entries = ledger.entries

        def append_then_read(start: int = 0, end: int | None = None):
            other.append(entries(9, 3, "late"))  # between reading the size and the checkpoints
            return read_entries(start, end)

        ledger.entries = append_then_read  # type: ignore[method-assign]
        assert export_ledger(ledger, path, ledger.public_key() or "") == sum(APPLIES)
        assert other.size() == sum(APPLIES) + 3
    report = verify_export(path)
    assert report.ok, report.problems
    assert report.size == sum(APPLIES) and report.checkpoints == len(APPLIES)


def test_entries_appended_without_a_checkpoint_do_not_verify(data_dir: Path) -> None:
    forge_entries(data_dir, entries(3, 2, tag="unsigned"))
    report = verify(data_dir)
    assert report.first_bad == 12 and report.verified_size == 12
    assert "entries 12..13 are covered by no signed checkpoint" in report.problems[0].message


@pytest.mark.parametrize("table", ["checkpoints", "nodes", "meta"])
def test_a_writer_never_recreates_a_dropped_table(data_dir: Path, table: str) -> None:
    sql(data_dir, (f"DROP TABLE {table}", ()))
    with pytest.raises(LedgerError, match=f"lost its {table} table"):
        Ledger.open(data_dir)
    conn = sqlite3.connect(data_dir / DB_NAME)
    tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert table not in tables
    report = verify(data_dir)
    messages = [p.message for p in report.problems]
    assert f"the {table} table is gone from ledger.db (dropped: tampering)" in messages


def test_a_writer_refuses_to_sign_over_removed_checkpoints_or_a_lost_key(data_dir: Path) -> None:
    sql(data_dir, ("DELETE FROM checkpoints WHERE size = 12", ()))
    with Ledger.open(data_dir) as ledger, pytest.raises(LedgerError, match="does not sign its 12"):
        ledger.append(entries(3, 1))
    assert verify(data_dir).size == 12  # nothing was appended
    (data_dir / KEY_NAME).unlink()
    with Ledger.open(data_dir) as ledger, pytest.raises(LedgerError, match="a new key would sign"):
        ledger.append(entries(3, 1))
    assert not (data_dir / KEY_NAME).exists()


def test_a_read_only_ledger_sees_what_an_open_writer_committed(data_dir: Path) -> None:
    with Ledger.open(data_dir) as writer:
        writer.append(entries(3, 2))
        assert (data_dir / f"{DB_NAME}-wal").exists()  # read through SQLite's WAL locking
        with Ledger.open(data_dir, readonly=True) as reader:
            assert reader.size() == 14 and reader.verify().ok
            with pytest.raises(LedgerError, match="read-only"):
                reader.append(entries(4, 1))
    with Ledger.open(data_dir, readonly=True) as reader:  # no WAL now: read as immutable
        assert not (data_dir / f"{DB_NAME}-wal").exists()
        assert reader.size() == 14 and reader.verify().ok
