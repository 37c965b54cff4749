"""The ledger's SQLite store: entries, every perfect subtree hash, and signed checkpoints.

Appending reads the right frontier (one stored node per set bit of the size), extends it and
writes the new leaf and the perfect subtrees it completes: O(log n) work, never a recompute.
Proofs fold O(log n) stored nodes. Writers serialise on an flock'ed file in the data dir and
SQLite's BEGIN IMMEDIATE, so concurrent processes cannot fork the log; each append (entries
and its checkpoint) is one WAL transaction, so a killed writer leaves the last commit intact.
Audits open it read-only: no file is created or written, not even the lock.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import socket
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from op_dbus.files import write_file
from op_dbus.ledger import merkle
from op_dbus.ledger.audit import AuditReport, audit
from op_dbus.ledger.checkpoint import (
    CheckpointError,
    load_key,
    load_or_create_key,
    open_checkpoint,
    sign_checkpoint,
    verifier_key,
)
from op_dbus.ledger.entries import canonical

DB_NAME = "ledger.db"
LOCK_NAME = "ledger.lock"
KEY_NAME = "ledger.key"
PUBLIC_NAME = "ledger.pub"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (idx INTEGER PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS nodes (
    level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL, PRIMARY KEY (level, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    id INTEGER PRIMARY KEY AUTOINCREMENT, size INTEGER NOT NULL, note TEXT NOT NULL
);
"""
TABLES = {"meta", "entries", "nodes", "checkpoints"}


class LedgerError(Exception):
    """The ledger cannot do what was asked (missing, bad index, damaged tree)."""


class LedgerMissing(LedgerError):
    """No ledger in the data dir yet."""


@dataclass(frozen=True)
class Entry:
    index: int
    data: str
    """The canonical JSON text exactly as stored and hashed (UTF-8)."""

    @property
    def value(self) -> dict[str, Any]:
        return json.loads(self.data)

    @property
    def leaf_hash(self) -> bytes:
        return merkle.leaf_hash(self.data.encode())


class Ledger:
    """One open ledger: `Ledger.open(data_dir)` to append, `readonly=True` to audit; close it
    (or use `with`)."""

    def __init__(
        self, data_dir: Path, conn: sqlite3.Connection, lock_fd: int | None, *, readonly: bool
    ) -> None:
        self.data_dir = data_dir
        self.readonly = readonly
        self._conn = conn
        self._lock_fd = lock_fd

    @classmethod
    def open(cls, data_dir: str | os.PathLike[str], *, readonly: bool = False) -> Ledger:
        """Open the ledger in `data_dir`; a writer creates dir and database when missing.

        A writer refuses a database that lost some of its tables: recreating an empty
        `checkpoints` table would hide the tampering and the next apply would sign it."""
        path = Path(data_dir)
        if readonly:
            return cls._open_readonly(path)
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        lock_fd = os.open(path / LOCK_NAME, flags, 0o600)
        try:
            conn = sqlite3.connect(path / DB_NAME, isolation_level=None, timeout=30.0)
            ledger = cls(path, conn, lock_fd, readonly=False)
            with ledger._write():
                conn.execute("PRAGMA journal_mode=WAL")
                ledger._create_or_check_schema()
        except BaseException:
            os.close(lock_fd)
            raise
        conn.execute("PRAGMA synchronous=FULL")
        return ledger

    @classmethod
    def _open_readonly(cls, path: Path) -> Ledger:
        """Open for reading only: no file is created or written, so audits run on a read-only
        copy. With no `-wal` file the database is read as immutable (nothing for SQLite to set
        up), holding a shared lock so that no writer changes it meanwhile."""
        db = path / DB_NAME
        if not db.is_file():
            raise LedgerMissing(f"no ledger at {db}")
        lock_fd = None
        if (path / LOCK_NAME).exists():
            lock_fd = os.open(path / LOCK_NAME, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            if lock_fd is not None:
                fcntl.flock(lock_fd, fcntl.LOCK_SH)
            immutable = not (path / f"{DB_NAME}-wal").exists()
            uri = f"{db.absolute().as_uri()}?mode=ro" + ("&immutable=1" if immutable else "")
            conn = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30.0)
            if not immutable and lock_fd is not None:
                os.close(lock_fd)  # SQLite's own locking keeps a WAL reader consistent
                lock_fd = None
        except BaseException:
            if lock_fd is not None:
                os.close(lock_fd)
            raise
        return cls(path, conn, lock_fd, readonly=True)

    def _create_or_check_schema(self) -> None:
        """Create the tables in a new database; refuse one that has only some of them."""
        present = self._tables()
        if not present:
            self._conn.executescript("BEGIN IMMEDIATE;" + SCHEMA + "COMMIT;")
            self._conn.execute(
                "INSERT OR IGNORE INTO meta VALUES ('origin', ?)",
                (f"{socket.gethostname()}/op-dbus",),
            )
        elif missing := sorted(TABLES - present):
            raise LedgerError(
                f"{self.data_dir / DB_NAME} has lost its {', '.join(missing)} table(s): "
                "it was tampered with; run `op-dbus ledger verify`"
            )

    def _tables(self) -> set[str]:
        rows = self._conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {name for (name,) in rows} & TABLES

    def close(self) -> None:
        try:
            if self.readonly:
                self._conn.close()
            else:
                with self._write():  # closing copies the WAL into the database file
                    self._conn.close()
        finally:
            if self._lock_fd is not None:
                os.close(self._lock_fd)

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[None]:
        """One writer across processes: the flock, then an IMMEDIATE transaction when asked."""
        if self._lock_fd is None or self.readonly:
            raise LedgerError("the ledger was opened read-only")
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._write():
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """One read transaction: the reads inside see one state, whatever others append."""
        self._conn.execute("BEGIN")
        try:
            yield
        finally:
            self._conn.execute("COMMIT")

    # -- reading ---------------------------------------------------------------------------

    @property
    def origin(self) -> str:
        row = self._conn.execute("SELECT value FROM meta WHERE key='origin'").fetchone()
        if row is None:
            raise LedgerError(f"{self.data_dir / DB_NAME} has lost its origin (meta table)")
        return row[0]

    def size(self) -> int:
        (last,) = self._conn.execute("SELECT max(idx) FROM entries").fetchone()
        return 0 if last is None else last + 1

    def _node(self, level: int, index: int) -> bytes:
        row = self._conn.execute(
            "SELECT hash FROM nodes WHERE level=? AND idx=?", (level, index)
        ).fetchone()
        if row is None:
            raise LedgerError(f"stored tree node ({level}, {index}) is missing; run verify")
        return row[0]

    def _check_size(self, size: int | None) -> int:
        current = self.size()
        if size is None:
            return current
        if not 0 <= size <= current:
            raise LedgerError(f"tree size {size} is outside 0..{current}")
        return size

    def root(self, size: int | None = None) -> bytes:
        return merkle.root(self._check_size(size), self._node)

    def entry(self, index: int) -> Entry:
        row = self._conn.execute("SELECT idx, data FROM entries WHERE idx=?", (index,)).fetchone()
        if row is None:
            raise LedgerError(f"no entry {index} (the log has {self.size()})")
        return Entry(*row)

    def entries(self, start: int = 0, end: int | None = None) -> Iterator[Entry]:
        stop = self.size() if end is None else end
        rows = self._conn.execute(
            "SELECT idx, data FROM entries WHERE idx >= ? AND idx < ? ORDER BY idx", (start, stop)
        )
        for row in rows:
            yield Entry(*row)

    def search(
        self, *, last: int | None = None, plugin: str | None = None, since: str | None = None
    ) -> list[Entry]:
        """The last `last` entries, optionally of one plugin and at or after `since` (UTC ISO)."""
        rows = self._conn.execute(
            "SELECT idx, data FROM entries"
            " WHERE (?1 IS NULL OR json_extract(data, '$.plugin') = ?1)"
            " AND (?2 IS NULL OR json_extract(data, '$.time') >= ?2)"
            " ORDER BY idx DESC LIMIT ?3",
            (plugin, since, -1 if last is None else last),
        ).fetchall()
        return [Entry(*row) for row in reversed(rows)]

    def apply_entries(self, apply_id: str) -> list[Entry]:
        """Every entry of the apply whose id starts with `apply_id`."""
        rows = self._conn.execute(
            "SELECT idx, data FROM entries WHERE json_extract(data, '$.apply_id') LIKE ?1 || '%'"
            " ORDER BY idx",
            (apply_id,),
        )
        return [Entry(*row) for row in rows]

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        size = self._check_size(size)
        if not 0 <= index < size:
            raise LedgerError(f"entry {index} is not in a tree of size {size}")
        return merkle.inclusion_proof(index, size, self._node)

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        size2 = self._check_size(size2)
        if not 0 <= size1 <= size2:
            raise LedgerError(f"size {size1} must be between 0 and {size2}")
        return merkle.consistency_proof(size1, size2, self._node)

    def checkpoints(self) -> list[str]:
        return [row[0] for row in self._conn.execute("SELECT note FROM checkpoints ORDER BY id")]

    def checkpoint_size(self) -> int:
        """The size the latest checkpoint signed (the current size when there is none)."""
        row = self._conn.execute("SELECT size FROM checkpoints ORDER BY id DESC LIMIT 1").fetchone()
        return self.size() if row is None else row[0]

    def latest_checkpoint(self) -> str | None:
        row = self._conn.execute("SELECT note FROM checkpoints ORDER BY id DESC LIMIT 1").fetchone()
        return None if row is None else row[0]

    def public_key(self) -> str | None:
        """The checkpoint signer as a signed-note verifier key: from the signing key when it is
        readable, else from `ledger.pub`; None when neither exists. Creates nothing."""
        try:
            key = load_key(self.data_dir / KEY_NAME)
        except (FileNotFoundError, PermissionError):
            key = None
        except CheckpointError as exc:
            raise LedgerError(str(exc)) from None
        if key is not None and "meta" in self._tables():  # the origin names the key
            return verifier_key(self.origin, key.public_key())
        try:
            return (self.data_dir / PUBLIC_NAME).read_text().strip()
        except FileNotFoundError:
            return None

    def verify(self, trusted: Sequence[str] = (), *, key: str | None = None) -> AuditReport:
        """Recompute every leaf and node from the entries; check them and every checkpoint.

        `trusted` are checkpoints kept elsewhere (notes), checked after the stored ones: they
        catch a log rewritten together with its stored checkpoints. `key` is the verifier key
        to check against instead of the one in the data dir. A table that is gone is reported.
        """
        with self.snapshot():
            present = self._tables()
            rows = self._rows("SELECT idx, data FROM entries ORDER BY idx", "entries", present)
            stored = self._rows(
                "SELECT level, idx, hash FROM nodes ORDER BY level, idx", "nodes", present
            )
            notes = [
                n
                for (n,) in self._rows(
                    "SELECT note FROM checkpoints ORDER BY id", "checkpoints", present
                )
            ]
            vkey = key if key is not None else self.public_key()
            report = audit(
                ((idx, data.encode()) for idx, data in rows),
                notes,
                vkey,
                trusted=trusted,
                stored_nodes=stored,
            )
        for table in sorted(TABLES - present):
            report.add(0, f"the {table} table is gone from {DB_NAME} (dropped: tampering)")
        return report

    def _rows(self, query: str, table: str, present: set[str]) -> Iterable[tuple[Any, ...]]:
        return self._conn.execute(query) if table in present else ()

    # -- writing ---------------------------------------------------------------------------

    def _key(self, size: int) -> Ed25519PrivateKey:
        """The signing key, created with the first entries (the caller holds the lock)."""
        path = self.data_dir / KEY_NAME
        if size and not path.exists():
            raise LedgerError(
                f"{path} is gone but the ledger has {size} entries: a new key would sign over "
                "them; not appending (run `op-dbus ledger verify`)"
            )
        key = load_or_create_key(path)
        public = self.data_dir / PUBLIC_NAME
        if not public.exists():
            write_file(public, verifier_key(self.origin, key.public_key()) + "\n")
        return key

    def _check_head(self, size: int, key: Ed25519PrivateKey) -> None:
        """Refuse to sign on top of a log its latest checkpoint does not sign exactly: the new
        checkpoint would vouch for whatever was changed or unsigned before it."""
        note = self.latest_checkpoint()
        if note is None:
            if size == 0:
                return
            problem = f"its {size} entries have no checkpoint"
        else:
            try:
                signed = open_checkpoint(note, verifier_key(self.origin, key.public_key()))
            except CheckpointError as exc:
                problem = f"its latest checkpoint does not verify: {exc}"
            else:
                if signed.size == size and signed.root == self.root(size):
                    return
                problem = f"its latest checkpoint does not sign its {size} entries"
        raise LedgerError(
            f"the ledger in {self.data_dir} does not verify ({problem}); not appending to it "
            "(run `op-dbus ledger verify`)"
        )

    def _frontier(self, size: int) -> list[tuple[int, bytes]]:
        """The perfect subtrees of a tree of `size`, largest first, as (level, hash)."""
        frontier, start = [], 0
        for level in range(size.bit_length() - 1, -1, -1):
            if size >> level & 1:
                frontier.append((level, self._node(level, start >> level)))
                start += 1 << level
        return frontier

    def append(self, entries: Iterable[Mapping[str, Any]]) -> int:
        """Append `entries` (each gets its `index`) and the signed checkpoint of the new size in
        one transaction; return the new size. No committed entry is ever left unsigned, so
        `verify` holds every entry to a checkpoint."""
        with self._transaction() as conn:
            size = self.size()
            key = self._key(size)
            self._check_head(size, key)
            frontier = self._frontier(size)
            entry_rows: list[tuple[int, str]] = []
            node_rows: list[tuple[int, int, bytes]] = []
            for entry in entries:
                data = canonical({**entry, "index": size})
                level, index, value = 0, size, merkle.leaf_hash(data)
                entry_rows.append((size, data.decode()))
                node_rows.append((0, size, value))
                while frontier and frontier[-1][0] == level:
                    value = merkle.node_hash(frontier.pop()[1], value)
                    level, index = level + 1, index >> 1
                    node_rows.append((level, index, value))
                frontier.append((level, value))
                size += 1
            conn.executemany("INSERT INTO entries VALUES (?, ?)", entry_rows)
            conn.executemany("INSERT OR REPLACE INTO nodes VALUES (?, ?, ?)", node_rows)
            root = merkle.EMPTY_ROOT
            if frontier:
                root = frontier[-1][1]
                for _, value in reversed(frontier[:-1]):
                    root = merkle.node_hash(value, root)
            note = sign_checkpoint(self.origin, size, root, key)
            conn.execute("INSERT INTO checkpoints (size, note) VALUES (?, ?)", (size, note))
        return size


def encode_proof(proof: Sequence[bytes]) -> list[str]:
    return [base64.b64encode(item).decode() for item in proof]
